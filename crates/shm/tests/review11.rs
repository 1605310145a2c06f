//! Review 11: the segment tracker and `shm::inventory` (issue #17), attacked
//! between real processes. Each test here failed on the code it was written
//! against (11 defects: a stopped or squatted tracker hanging `create`, the
//! client lock held across fork, a `/proc` scan per name, a listener on
//! descriptor 0-2, another user's squatter, a user whose main thread ended,
//! a tracker out of descriptors (twice), a crash on a closed connection
//! plus a death, adoption of untracked names) and guards its fix.
//!
//! Most run in a network namespace of their own ([`isolated`]): the
//! tracker's address is an abstract Unix socket, private to a network
//! namespace, so the tracker such a test starts, stops, starves or squats
//! is its own, not the one the rest of the suite (and other runs on this
//! machine) use. That needs root (`unshare(CLONE_NEWNET)`), which CI has.

mod common;
use common::*;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use daemon::{Child, Process};
use shm::{tracker, Futex, Shared};
use testkit::{name_exists, raise, unique_name, wait_for, GENEROUS};

/// This user's tracker address, squatted: a listening socket at it.
fn squat(backlog: i32) -> std::os::fd::OwnedFd {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let socket = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let uid = rustix::process::getuid().as_raw();
    let address =
        SocketAddrUnix::new_abstract_name(format!("procsync-tracker-{uid}").as_bytes()).unwrap();
    rustix::net::bind(&socket, &address).unwrap();
    rustix::net::listen(&socket, backlog).unwrap();
    socket
}

// ---------------------------------------------------------------------------
// Promise 4: a create never fails or hangs because of the tracker.
// ---------------------------------------------------------------------------

/// A tracker stopped with SIGSTOP (Ctrl-Z on it, a debugger, a cgroup
/// freezer) reads nothing: every create and drop sends it a message on a
/// blocking socket, so once the socket's send buffer is full the next
/// `create` blocks in `sendmsg`, for as long as the tracker stays stopped.
#[test]
fn a_stopped_tracker_does_not_hang_create() {
    let base = unique_name("r11-stopped");
    isolated(move || {
        let first = Shared::create(&format!("{base}-first"), AtomicU64::new(0)).unwrap();
        let tracker = tracker::running().expect("the first create started a tracker");
        signal(tracker, rustix::process::Signal::STOP);
        assert!(testkit::wait_stopped_or_exited(tracker));
        const ROUNDS: u64 = 2_000;
        let done = Shared::new(AtomicU64::new(0)).unwrap();
        let mut maker = {
            let (base, done) = (base.clone(), &done);
            Process::new(move || {
                for i in 0..ROUNDS {
                    let made = Shared::create(&format!("{base}-{i}"), AtomicU64::new(i)).unwrap();
                    drop(made);
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
            .start()
            .unwrap()
        };
        let outcome = maker.join_timeout(Duration::from_secs(10));
        let rounds = done.load(Ordering::SeqCst);
        finish(maker);
        drop(first);
        remove_names(&base);
        outcome.map_err(|e| {
            format!("with the tracker stopped, {rounds} of {ROUNDS} create/drop rounds finished, then: {e}")
        })
    });
}

/// Anyone of the user can bind the tracker's (abstract) address first and
/// never accept: `connect` on the blocking socket then waits for room in
/// the listener's backlog, for ever.
#[test]
fn a_squatted_address_does_not_hang_create() {
    let base = unique_name("r11-squat");
    isolated(move || {
        let _squatter = squat(0);
        // One connection waiting in the backlog fills it (as a tracker
        // stopped with 129 connections waiting would be).
        let filler = {
            use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
            let socket = rustix::net::socket_with(
                AddressFamily::UNIX,
                SocketType::SEQPACKET,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
                None,
            )
            .unwrap();
            let uid = rustix::process::getuid().as_raw();
            let address =
                SocketAddrUnix::new_abstract_name(format!("procsync-tracker-{uid}").as_bytes())
                    .unwrap();
            rustix::net::connect(&socket, &address).unwrap();
            socket
        };
        let name = format!("{base}-0");
        let mut maker = {
            let name = name.clone();
            Process::new(move || drop(Shared::create(&name, AtomicU64::new(1)).unwrap()))
                .start()
                .unwrap()
        };
        let outcome = maker.join_timeout(Duration::from_secs(5));
        finish(maker);
        drop(filler);
        remove_names(&base);
        outcome.map_err(|e| format!("create with the tracker's address squatted: {e}"))
    });
}

/// A process forked while another of its parent's threads is inside
/// `tracker::track` or `untrack` inherits the tracker client's mutex
/// locked, by a thread that does not exist in the child: the child's first
/// `create` waits on it for ever.
#[test]
fn a_child_forked_while_another_thread_creates_can_create() {
    let base = unique_name("r11-fork");
    isolated(move || {
        let stop = AtomicBool::new(false);
        let outcome = std::thread::scope(|scope| {
            let (hammer_base, stop) = (format!("{base}-thread"), &stop);
            scope.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let made = Shared::create(&format!("{hammer_base}-{i}"), AtomicU64::new(i));
                    drop(made.unwrap());
                    i += 1;
                }
            });
            let mut outcome = Ok(());
            for round in 0..300 {
                let name = format!("{base}-child-{round}");
                let mut child = Process::new(move || {
                    drop(Shared::create(&name, AtomicU64::new(1)).unwrap());
                })
                .start()
                .unwrap();
                let joined = child.join_timeout(Duration::from_secs(3));
                if let Err(e) = joined {
                    let wchan = std::fs::read_to_string(format!("/proc/{}/wchan", child.pid()))
                        .unwrap_or_default();
                    outcome = Err(format!(
                        "round {round}: the forked child's create did not finish: {e} (waiting in {wchan:?})"
                    ));
                    finish(child);
                    break;
                }
            }
            stop.store(true, Ordering::Relaxed);
            outcome
        });
        remove_names(&base);
        outcome
    });
}

// ---------------------------------------------------------------------------
// Promise 1: a dead creator's name is gone within 100 ms.
// ---------------------------------------------------------------------------

/// The tracker judges a dead creator's names one after another, each with a
/// full scan of `/proc` (every process's `maps` and `fd`): a creator of a
/// hundred names (a pool of segments) has the last of them removed long
/// after 100 ms.
#[test]
fn a_creator_of_many_names_has_them_all_removed_within_100_ms() {
    let base = unique_name("r11-many");
    isolated(move || {
        const NAMES: usize = 100;
        let ready = Shared::new(Futex::new(0)).unwrap();
        let mut child = {
            let (base, ready) = (base.clone(), &ready);
            Process::new(move || {
                let _made: Vec<_> = (0..NAMES)
                    .map(|i| Shared::create(&format!("{base}-{i}"), AtomicU64::new(0)).unwrap())
                    .collect();
                raise(ready);
                testkit::park_until_killed();
            })
            .start()
            .unwrap()
        };
        wait_for(&ready, 1);
        let died = kill_and_reap(&mut child);
        let last = gone_after(&format!("{base}-{}", NAMES - 1), died, GENEROUS);
        let all = (0..NAMES)
            .map(|i| gone_after(&format!("{base}-{i}"), died, GENEROUS))
            .max()
            .flatten();
        remove_names(&base);
        match all {
            Some(after) if after <= PROMISED => Ok(()),
            _ => Err(format!(
                "the creator of {NAMES} names died; all gone after {all:?} (the last one: {last:?}; promised {PROMISED:?})"
            )),
        }
    });
}

/// A process that runs with its standard descriptors closed (a daemon that
/// closed them; in a shell, `prog <&- >&- 2>&-`) gets descriptor 0 for the
/// segment and 1 for the tracker's listening socket; the forked tracker
/// then puts `/dev/null` on 0, 1 and 2, closing its own listener: the creator's
/// connection is refused (or reset) and its names are never tracked.
///
/// The new tracker's adoption of live creators' names from `/dev/shm`
/// hides this for a name whose creator recorded itself by then; here the
/// creator is stopped right after telling the tracker (as it could be
/// preempted), so it is not. The broken tracker meanwhile polls
/// `/dev/null`, always readable, in a busy loop while its adopted creators
/// live.
#[test]
fn a_creator_without_standard_descriptors_has_its_names_removed() {
    use shm::crash::{self, Action};
    let base = unique_name("r11-nostd");
    isolated(move || {
        let name = format!("{base}-0");
        let mut child = {
            let name = name.clone();
            Process::new(move || {
                // SAFETY: closes this process's standard input, output and
                // error, which nothing in this (test-only, forked) process
                // uses or holds a handle to from here on.
                unsafe {
                    libc::close(0);
                    libc::close(1);
                    libc::close(2);
                }
                crash::arm("segment: file created", Action::Stop);
                let _segment = Shared::create(&name, AtomicU64::new(7)).unwrap();
                testkit::park_until_killed();
            })
            .start()
            .unwrap()
        };
        assert!(testkit::wait_stopped_or_exited(child.pid()));
        assert!(name_exists(&name));
        let died = kill_and_reap(&mut child);
        let gone = gone_after(&name, died, PROMISED * 10);
        remove_names(&base);
        match gone {
            Some(_) => Ok(()),
            None => Err(format!(
                "a creator with fds 0, 1 and 2 closed was killed in create, after telling the tracker; its name was still there {:?} later",
                PROMISED * 10
            )),
        }
    });
}

/// Another user binds this user's tracker address first (abstract socket
/// names have no permissions): this user's creators see a foreign peer and
/// track nothing, so no name of theirs is ever removed after their death.
/// (Root's address `procsync-tracker-0` squatted by `nobody`.)
#[test]
fn another_users_squatter_cannot_turn_cleanup_off() {
    let base = unique_name("r11-foreign");
    isolated(move || {
        let squatting = Shared::new(Futex::new(0)).unwrap();
        let squatter = {
            let squatting = &squatting;
            Process::new(move || {
                // SAFETY: setuid only changes this forked process's
                // credentials; no memory is involved.
                let rc = unsafe { libc::setuid(65534) };
                assert_eq!(rc, 0, "setuid(nobody) needs root");
                // Bind the address of the user we came from (root's).
                use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
                let socket = rustix::net::socket_with(
                    AddressFamily::UNIX,
                    SocketType::SEQPACKET,
                    SocketFlags::CLOEXEC,
                    None,
                )
                .unwrap();
                let address = SocketAddrUnix::new_abstract_name(b"procsync-tracker-0").unwrap();
                rustix::net::bind(&socket, &address).unwrap();
                rustix::net::listen(&socket, 128).unwrap();
                raise(squatting);
                testkit::park_until_killed();
            })
            .start()
            .unwrap()
        };
        wait_for(&squatting, 1);
        let name = format!("{base}-0");
        let ready = Shared::new(Futex::new(0)).unwrap();
        let mut child = creator(&name, &ready);
        wait_for(&ready, 1);
        let died = kill_and_reap(&mut child);
        let gone = gone_after(&name, died, PROMISED * 10);
        finish(squatter);
        remove_names(&base);
        match gone {
            Some(_) => Ok(()),
            None => Err(format!(
                "with nobody's process at root's tracker address, a killed creator's name was still there {:?} later",
                PROMISED * 10
            )),
        }
    });
}

// ---------------------------------------------------------------------------
// Promise 2: never removed while a live process maps it or holds it open.
// ---------------------------------------------------------------------------

/// A process whose main thread has ended while its other threads run (the
/// main thread called `pthread_exit`, or the raw `exit` system call) shows
/// empty `/proc/PID/maps` and `/proc/PID/fd` (they are the main thread's);
/// its mappings are in `/proc/PID/task/TID/maps`. The tracker reads only
/// the former, finds no user, and removes a name that process maps.
#[test]
fn a_name_mapped_by_a_process_whose_main_thread_ended_is_kept() {
    let base = unique_name("r11-leader");
    isolated(move || {
        let name = format!("{base}-0");
        let signals = Shared::new([Futex::new(0), Futex::new(0)]).unwrap();
        let [ready, mapped] = &*signals;
        let mut made = creator(&name, ready);
        wait_for(ready, 1);
        let user = {
            let name = name.clone();
            Process::new(move || {
                let kept = Shared::<AtomicU64>::open(&name).unwrap();
                std::thread::scope(|scope| {
                    scope.spawn(move || {
                        let _kept = kept;
                        raise(mapped);
                        testkit::park_until_killed();
                    });
                    wait_for(mapped, 1);
                    // SAFETY: ends only this (the main) thread, at once,
                    // running nothing more of it: the other thread owns the
                    // mapping, and the scope's data lives on in this
                    // process's memory (this thread's stack is not freed).
                    unsafe { libc::syscall(libc::SYS_exit, 0) };
                });
            })
            .start()
            .unwrap()
        };
        wait_for(mapped, 1);
        testkit::wait_until("the user's main thread has ended", || {
            testkit::process_state(user.pid()) == Some(b'Z')
        });
        let died = kill_and_reap(&mut made);
        let gone = gone_after(&name, died, PROMISED * 5);
        let user_alive = std::path::Path::new(&format!("/proc/{}/task", user.pid())).exists();
        finish(user);
        remove_names(&base);
        match gone {
            None => Ok(()),
            Some(after) => Err(format!(
                "the name was removed {after:?} after its creator died while a process (alive: {user_alive}) still mapped it"
            )),
        }
    });
}

/// The tracker's descriptor limit is whatever the process that forked it
/// had (it never raises it), and each creator costs it two descriptors (a
/// socket, a pidfd): with the default soft limit of 1024, about 510 live
/// creators fill it (here a limit of 16 stands for it). At the limit its
/// `/proc` scan cannot open `/proc/PID/maps` or `/proc/PID/fd`, finds no
/// user, and removes a name a live process maps.
#[test]
fn a_tracker_out_of_descriptors_removes_no_used_name() {
    let base = unique_name("r11-emfile-used");
    isolated(move || {
        let (mut children, name, survivor, signals) = tracker_at_its_limit(&base);
        let mut first = children.remove(0);
        assert!(
            name_exists(&name),
            "the name is there while its creator runs"
        );
        let died = kill_and_reap(&mut first);
        let gone = gone_after(&name, died, PROMISED * 5);
        raise(&signals[2]);
        let _ = survivor.join();
        for child in children {
            finish(child);
        }
        remove_names(&base);
        match gone {
            None => Ok(()),
            Some(after) => Err(format!(
                "the tracker at its descriptor limit removed the name {after:?} after its creator died, while a live process mapped it"
            )),
        }
    });
}

/// ... and the creators it could not accept are never watched: their names
/// stay after they are killed (the tracker, meanwhile, spins on its
/// listener).
#[test]
fn a_tracker_out_of_descriptors_still_removes_dead_creators_names() {
    let base = unique_name("r11-emfile-left");
    isolated(move || {
        let (children, _name, survivor, signals) = tracker_at_its_limit(&base);
        raise(&signals[2]);
        let _ = survivor.join();
        let mut left = Vec::new();
        for (i, mut child) in children.into_iter().enumerate() {
            let died = kill_and_reap(&mut child);
            if gone_after(&format!("{base}-{i}"), died, PROMISED * 5).is_none() {
                left.push(i);
            }
        }
        remove_names(&base);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "creators {left:?} (of 0..{CREATORS}) were killed; their names were still there {:?} later",
                PROMISED * 5
            ))
        }
    });
}

/// What [`tracker_at_its_limit`] started: the creators, creator 0's name,
/// the survivor that maps it, and the signals (`[2]` lets the survivor go).
type AtTheLimit = (Vec<Child<()>>, String, Child<()>, Shared<[Futex; 3]>);

/// Creators started for [`tracker_at_its_limit`].
const CREATORS: usize = 12;

/// Starts a tracker (in this isolated process) with a descriptor limit of
/// 16, then [`CREATORS`] creators of `{base}-{i}`, and a survivor that maps
/// creator 0's name until `signals[2]` is raised: more than the tracker
/// can hold.
fn tracker_at_its_limit(base: &str) -> AtTheLimit {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(16),
            maximum: before.maximum,
        },
    )
    .unwrap();
    // The tracker is forked here, and keeps the limit of 16.
    let starter = Shared::create(&format!("{base}-starter"), AtomicU64::new(0)).unwrap();
    setrlimit(Resource::Nofile, before).unwrap();
    drop(starter);
    let signals = Shared::new([Futex::new(0), Futex::new(0), Futex::new(0)]).unwrap();
    let name = format!("{base}-0");
    let mut children = vec![creator(&name, &signals[0])];
    wait_for(&signals[0], 1);
    let survivor = {
        let (name, signals) = (name.clone(), &signals);
        Process::new(move || {
            let kept = Shared::<AtomicU64>::open(&name).unwrap();
            raise(&signals[1]);
            wait_for(&signals[2], 1);
            drop(kept);
        })
        .start()
        .unwrap()
    };
    wait_for(&signals[1], 1);
    for i in 1..CREATORS {
        children.push(creator(&format!("{base}-{i}"), &signals[0]));
        wait_for(&signals[0], i as u32 + 1);
    }
    (children, name, survivor, signals)
}

// ---------------------------------------------------------------------------
// The opt-out: PROCSYNC_NO_TRACKER / tracker::disable().
// ---------------------------------------------------------------------------

/// `tracker::disable()` promises that the names such a process creates
/// "stay after they die, until removed". A tracker started later by any
/// other process of the user adopts them (it reads every live creator's
/// names from `/dev/shm`) and removes them when that creator dies.
#[test]
fn a_disabled_creators_names_stay_after_it_dies() {
    let base = unique_name("r11-disabled");
    isolated(move || {
        let signals = Shared::new([Futex::new(0), Futex::new(0)]).unwrap();
        let kept = format!("{base}-kept");
        let mut untracked = {
            let (kept, signals) = (kept.clone(), &signals);
            Process::new(move || {
                tracker::disable();
                let _segment = Shared::create(&kept, AtomicU64::new(1)).unwrap();
                raise(&signals[0]);
                testkit::park_until_killed();
            })
            .start()
            .unwrap()
        };
        wait_for(&signals[0], 1);
        // Anyone else's create starts a tracker.
        let mut other = creator(&format!("{base}-other"), &signals[1]);
        wait_for(&signals[1], 1);
        let died = kill_and_reap(&mut untracked);
        let gone = gone_after(&kept, died, PROMISED * 5);
        kill_and_reap(&mut other);
        remove_names(&base);
        match gone {
            None => Ok(()),
            Some(after) => Err(format!(
                "the name of a creator that called tracker::disable() was removed {after:?} after it died"
            )),
        }
    });
}

// ---------------------------------------------------------------------------
// Promises 3 and 6: nothing a client does crashes the tracker.
// ---------------------------------------------------------------------------

/// A connection to the tracker, as `tracker::running` makes one: it asks
/// who the tracker is and waits (at most GENEROUS) for the answer, which
/// also proves that the tracker has read everything sent to it before.
fn ask_who(socket: &std::os::fd::OwnedFd) {
    use rustix::event::{PollFd, PollFlags};
    rustix::net::send(socket, b"?", rustix::net::SendFlags::empty()).unwrap();
    let mut ready = [PollFd::new(socket, PollFlags::IN)];
    let limit = rustix::event::Timespec {
        tv_sec: GENEROUS.as_secs() as i64,
        tv_nsec: 0,
    };
    assert_eq!(
        rustix::event::poll(&mut ready, Some(&limit)).unwrap(),
        1,
        "the tracker answers"
    );
    let mut answer = [0u8; 4];
    let (got, _) = rustix::net::recv(socket, &mut answer, rustix::net::RecvFlags::empty()).unwrap();
    assert_eq!(got, 4);
}

/// The tracker's loop drops connections that closed before their hello
/// (`creators.retain`) and then removes the creators that ended by their
/// index from before that: when, in one turn of the loop, such a
/// connection (`tracker::running`'s, a tool's) closes and a creator after
/// it in the list ends, the index is past the end and the tracker panics.
/// (Here with a user id of its own, so that no other run's creators are
/// in the tracker's list.) The panic unwinds into the copy of the stack of
/// the process that forked it, inside that process's `create`: its `UnlinkOnDrop` guard removes
/// *that process's* name, which it still uses. The dead creator's name is
/// never removed.
#[test]
fn a_closed_connection_and_a_death_together_do_not_crash_the_tracker() {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let base = unique_name("r11-retain");
    isolated(move || {
        // A user of its own, whose tracker adopts no other run's names (a
        // creator of theirs ending would reorder the tracker's list).
        let uid = 40_000 + std::process::id() % 20_000;
        // SAFETY: setuid only changes this forked process's credentials.
        let rc = unsafe { libc::setuid(uid) };
        assert_eq!(rc, 0, "setuid needs root");
        // Its /proc files (wchan, below) readable again by this user.
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable)
            .unwrap();
        let starter = format!("{base}-starter");
        // This process forks the tracker, inside this create, and is its
        // first creator.
        let _kept = Shared::create(&starter, AtomicU64::new(0)).unwrap();
        let tracker = tracker::running().expect("a tracker");
        // Its second connection: one that never says hello.
        let socket = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let uid = rustix::process::getuid().as_raw();
        let address =
            SocketAddrUnix::new_abstract_name(format!("procsync-tracker-{uid}").as_bytes())
                .unwrap();
        rustix::net::connect(&socket, &address).unwrap();
        ask_who(&socket);
        // The third: a creator.
        let name = format!("{base}-0");
        let ready = Shared::new(Futex::new(0)).unwrap();
        let mut child = creator(&name, &ready);
        wait_for(&ready, 1);
        // Twice: the creator's connection is accepted, then its hello read.
        ask_who(&socket);
        ask_who(&socket);
        // The tracker sees both ends in one turn of its loop: stopped while
        // it waits in poll (not still reading this connection), it sees
        // them when it goes on.
        testkit::wait_until("the tracker waits in poll", || {
            std::fs::read_to_string(format!("/proc/{tracker}/wchan"))
                .is_ok_and(|wchan| wchan.contains("poll"))
        });
        signal(tracker, rustix::process::Signal::STOP);
        assert!(testkit::wait_stopped_or_exited(tracker));
        drop(socket);
        let died = kill_and_reap(&mut child);
        signal(tracker, rustix::process::Signal::CONT);
        let gone = gone_after(&name, died, PROMISED * 10);
        let tracker_now = tracker::running();
        let starter_there = name_exists(&starter);
        remove_names(&base);
        if gone.is_some() && tracker_now == Some(tracker) && starter_there {
            Ok(())
        } else {
            Err(format!(
                "after a hello-less connection closed and a creator died together: the dead creator's name gone: {gone:?}; \
                 the tracker {tracker} now: {tracker_now:?}; the name of the (live) process that forked it still there: {starter_there}"
            ))
        }
    });
}
