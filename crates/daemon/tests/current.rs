//! Python's `current_process()`, `parent_process()` and
//! `active_children()`, between real processes: children, grandchildren,
//! a parent killed under its child, and a new process that takes the dead
//! parent's pid.

use std::sync::atomic::Ordering;

use daemon::{
    active_children, current_process, parent_process, wait_first, JoinError, Process,
    MAIN_PROCESS_NAME,
};
use shm::pid::Pid;
use shm::{Futex, Shared};
use testkit::{raise, wait_for, GENEROUS};

/// What a process says of itself and of its parent, to compare in the test.
type Seen = (u32, String, Vec<u64>, bool, Option<(u32, String, bool)>);

fn seen_here() -> Seen {
    let me = current_process();
    let parent = parent_process().map(|p| (p.pid().get(), p.name().to_string(), p.is_alive()));
    (
        me.pid().get(),
        me.name().to_string(),
        me.identity().to_vec(),
        me.is_daemon(),
        parent,
    )
}

#[test]
fn the_main_process_is_mainprocess_and_has_no_parent() {
    let (pid, name, identity, daemon, parent) = seen_here();
    assert_eq!(pid, std::process::id());
    assert_eq!(name, MAIN_PROCESS_NAME);
    assert!(identity.is_empty());
    assert!(!daemon);
    assert!(parent.is_none());
}

/// A child and its child know their pids, names and numbers, and their
/// parents' pids and names.
#[test]
fn a_child_and_a_grandchild_know_themselves_and_their_parents() {
    for name in [None, Some("worker")] {
        let mut process = Process::new(|| {
            let grandchild = Process::new(seen_here).start().unwrap();
            let grandchild_pid = grandchild.pid().get();
            (seen_here(), grandchild_pid, grandchild.join().unwrap())
        });
        if let Some(name) = name {
            process = process.name(name);
        }
        let child = process.start().unwrap();
        let (child_pid, child_name) = (child.pid().get(), child.name().to_string());
        let (in_child, grandchild_pid, in_grandchild) = child.join().unwrap();

        let (pid, name_there, identity, daemon, parent) = in_child;
        assert_eq!(pid, child_pid);
        assert_eq!(name_there, child_name);
        assert_eq!(identity.len(), 1);
        if name.is_none() {
            assert_eq!(child_name, format!("Process-{}", identity[0]));
        }
        assert!(!daemon);
        assert_eq!(
            parent,
            Some((std::process::id(), MAIN_PROCESS_NAME.to_string(), true))
        );

        let (pid, name_there, grand_identity, daemon, parent) = in_grandchild;
        assert_eq!(pid, grandchild_pid);
        assert_eq!(grand_identity, [identity[0], 1]);
        // Default names follow the numbers, whatever the parent is called.
        assert_eq!(name_there, format!("Process-{}:1", identity[0]));
        assert!(!daemon);
        assert_eq!(parent, Some((child_pid, child_name, true)));
    }
}

#[test]
fn a_daemon_child_says_it_is_one() {
    let (_, _, _, daemon, _) = Process::new(seen_here)
        .daemon(true)
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert!(daemon);
}

/// What the grandchild saw of its killed parent (see
/// `the_parent_is_killed_under_a_grandchild`).
const ALIVE_AT_FIRST: u32 = 1;
const WAIT_SAW_THE_END: u32 = 2;
const DEAD_AFTER_THE_WAIT: u32 = 4;
const DEAD_AFTER_THE_PID_IS_REUSED: u32 = 8;
const A_NEW_LOOK_SEES_IT_DEAD: u32 = 16;
const DONE: u32 = 1 << 31;

/// A child C starts a grandchild G and waits to be killed; G takes its
/// `parent_process()`, waits on it, and records in `seen` (bits above) what
/// it saw once the test SIGKILLs C. With `reuse`, the test then starts a
/// new process with C's pid (`start_with_pid`) before G looks again, once
/// through the `ParentProcess` it has and once through a new
/// `parent_process()`.
fn the_parent_is_killed_under_a_grandchild(reuse: bool) {
    let ready = Shared::new(Futex::new(0)).unwrap();
    let reused = Shared::new(Futex::new(0)).unwrap();
    let seen = Shared::new(Futex::new(0)).unwrap();
    let (ready, reused, seen) = (&ready, &reused, &seen);
    let record = |bit: u32| {
        seen.fetch_or(bit, Ordering::SeqCst);
    };
    let parent = Process::new(move || {
        let _grandchild = Process::new(move || {
            let parent = parent_process().expect("started by Process");
            if parent.is_alive() {
                record(ALIVE_AT_FIRST);
            }
            raise(ready);
            if parent.wait_timeout(GENEROUS).unwrap() {
                record(WAIT_SAW_THE_END);
            }
            if !parent.is_alive() {
                record(DEAD_AFTER_THE_WAIT);
            }
            if reuse {
                wait_for(reused, 1);
                if !parent.is_alive() && parent.wait_timeout(GENEROUS).unwrap() {
                    record(DEAD_AFTER_THE_PID_IS_REUSED);
                }
                let again = parent_process().expect("still started by Process");
                if again.pid() == parent.pid()
                    && !again.is_alive()
                    && again.sentinel().is_none()
                    && again.wait_timeout(GENEROUS).unwrap()
                {
                    record(A_NEW_LOOK_SEES_IT_DEAD);
                }
            }
            record(DONE);
            seen.wake_all();
        })
        .start()
        .unwrap();
        testkit::park_until_killed();
    })
    .start()
    .unwrap();
    let parent_pid: Pid = parent.pid();
    wait_for(ready, 1);
    parent.kill().unwrap();
    assert!(
        matches!(parent.join(), Err(JoinError::Signaled { signal, .. }) if signal == libc::SIGKILL)
    );
    let newcomer = reuse.then(|| {
        // A new process with the dead parent's pid, running until G has
        // looked again.
        let newcomer = testkit::start_with_pid(parent_pid, move || {
            wait_for(seen, DONE);
        });
        raise(reused);
        newcomer
    });
    let limit = testkit::deadline(GENEROUS);
    loop {
        let now = seen.load(Ordering::SeqCst);
        if now & DONE != 0 {
            break;
        }
        assert!(
            seen.wait(now, Some(limit)),
            "the grandchild never finished: {now:#x}"
        );
    }
    if let Some(newcomer) = newcomer {
        newcomer.join().unwrap();
    }
    let mut expected = DONE | ALIVE_AT_FIRST | WAIT_SAW_THE_END | DEAD_AFTER_THE_WAIT;
    if reuse {
        expected |= DEAD_AFTER_THE_PID_IS_REUSED | A_NEW_LOOK_SEES_IT_DEAD;
    }
    assert_eq!(seen.load(Ordering::SeqCst), expected);
}

#[test]
fn parent_process_is_alive_turns_false_when_the_parent_is_killed() {
    the_parent_is_killed_under_a_grandchild(false);
}

#[test]
fn parent_process_stays_dead_when_a_new_process_takes_its_pid() {
    if testkit::skip_unless_pids_can_be_forced() {
        return;
    }
    the_parent_is_killed_under_a_grandchild(true);
}

/// `active_children` lists the running children (pids, names, numbers,
/// daemon flags) and leaves out the ended ones, without taking their
/// results from their `Child` handles.
#[test]
fn active_children_lists_running_children_and_drops_ended_ones() {
    let gate = Shared::new(Futex::new(0)).unwrap();
    let gate_ref = &gate;
    let waiting = |value: u8| {
        move || {
            wait_for(gate_ref, 1);
            value
        }
    };
    let first = Process::new(waiting(1)).name("first").start().unwrap();
    let second = Process::new(waiting(2)).daemon(true).start().unwrap();
    let quick = Process::new(|| 3u8).start().unwrap();
    assert_eq!(
        wait_first(&[&quick], Some(GENEROUS)).unwrap(),
        Some(0),
        "the quick one ends"
    );
    // Other tests of this binary start children too: look at ours.
    let ours = |pids: &[Pid]| {
        active_children()
            .into_iter()
            .filter(|c| pids.contains(&c.pid()))
            .collect::<Vec<_>>()
    };
    let running = ours(&[first.pid(), second.pid(), quick.pid()]);
    assert_eq!(running.len(), 2, "{running:?}");
    assert_eq!(running[0].pid(), first.pid());
    assert_eq!(running[0].name(), "first");
    assert!(!running[0].is_daemon());
    assert_eq!(running[1].pid(), second.pid());
    assert_eq!(running[1].name(), second.name());
    assert!(running[1].is_daemon());
    let number = |name: &str| {
        name.strip_prefix("Process-")
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(running[1].identity(), [number(second.name())]);
    assert_eq!(running[0].identity().len(), 1);
    assert!(
        running[0].identity() < running[1].identity(),
        "numbered in order"
    );
    // The ended child's result is still its handle's.
    assert_eq!(quick.join().unwrap(), 3);

    raise(&gate);
    let pids = [first.pid(), second.pid()];
    assert_eq!(first.join().unwrap(), 1);
    assert_eq!(second.join().unwrap(), 2);
    assert!(ours(&pids).is_empty());
}

/// In a child, `active_children` lists that child's own children only,
/// none of its parent's.
#[test]
fn a_childs_active_children_are_its_own() {
    let gate = Shared::new(Futex::new(0)).unwrap();
    let gate_ref = &gate;
    let sibling = Process::new(move || wait_for(gate_ref, 1)).start().unwrap();
    let child = Process::new(move || {
        let grandchild = Process::new(move || wait_for(gate_ref, 1)).start().unwrap();
        let listed: Vec<(u32, Vec<u64>)> = active_children()
            .iter()
            .map(|c| (c.pid().get(), c.identity().to_vec()))
            .collect();
        let expected = (
            grandchild.pid().get(),
            [current_process().identity(), &[1]].concat(),
        );
        raise(gate_ref);
        grandchild.join().unwrap();
        listed == [expected]
    })
    .start()
    .unwrap();
    assert!(child.join().unwrap(), "the child listed only its own child");
    sibling.join().unwrap();
}
