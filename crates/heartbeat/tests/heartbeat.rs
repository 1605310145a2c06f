//! Heartbeats: rhythm under load, silence and stalls detected, no false
//! alarms with 10,000 reporters.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use daemon::Process;
use heartbeat::{Beat, Health, Monitor, Reporter};
use testkit::{deadline, GENEROUS};

const INTERVAL: Duration = Duration::from_millis(100);

/// Runs until killed, bumping progress (or not), spinning on the CPU.
fn busy_main(addr: std::net::SocketAddr, id: &'static str, bump: bool) -> daemon::Child<()> {
    Process::new(move || {
        let beat = Reporter::new(id)
            .interval(INTERVAL)
            .udp(addr)
            .start()
            .unwrap();
        let limit = deadline(GENEROUS);
        let mut spins = 0u64;
        while Instant::now() < limit {
            spins = spins.wrapping_add(1);
            if bump && spins.is_multiple_of(100_000) {
                beat.progress(1);
            }
            std::hint::black_box(spins);
        }
    })
    .start()
    .unwrap()
}

#[test]
fn the_reporter_keeps_its_rhythm_while_main_is_busy() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(GENEROUS)).unwrap();
    // Both CPUs busy: the main process and one more spinner.
    let main = busy_main(socket.local_addr().unwrap(), "rhythm", true);
    let spinner = Process::new(|| {
        let limit = deadline(GENEROUS);
        while Instant::now() < limit {
            std::hint::spin_loop();
        }
    })
    .start()
    .unwrap();
    let mut arrivals = Vec::new();
    let mut buf = [0u8; 2048];
    let mut last_progress = 0;
    // The first beat goes at once, the second after the random phase
    // (between one and two intervals): the rhythm starts there.
    socket
        .recv(&mut buf)
        .expect("the first beat within GENEROUS");
    while arrivals.len() < 21 {
        let n = socket.recv(&mut buf).expect("a beat within GENEROUS");
        let beat: Beat = serde_json::from_slice(&buf[..n]).unwrap();
        // When the daemon sent it (its own clock, in ms): what the rhythm
        // is about. Arrival times here also measure this process's
        // scheduling, which a loaded machine delays.
        arrivals.push(beat.sent_at_ms);
        last_progress = beat.progress;
    }
    main.kill().unwrap();
    spinner.kill().unwrap();
    let _ = (main.join(), spinner.join());
    let gaps: Vec<f64> = arrivals
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]) as f64 / 1000.0)
        .collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let interval = INTERVAL.as_secs_f64();
    eprintln!(
        "mean gap {:.2} ms, min {:.2}, max {:.2}",
        mean * 1e3,
        gaps.iter().cloned().fold(f64::MAX, f64::min) * 1e3,
        gaps.iter().cloned().fold(0.0, f64::max) * 1e3
    );
    assert!(
        (mean - interval).abs() <= 0.05 * interval,
        "mean gap {mean} s"
    );
    // On an absolute schedule a late beat is followed by an early one:
    // jitter, never a beat missed.
    assert!(gaps.iter().all(|&g| g < 2.0 * interval), "{gaps:?}");
    assert!(last_progress > 0, "progress travelled with the beats");
}

#[test]
fn a_killed_main_goes_silent_and_a_stalled_one_stuck() {
    let mut monitor = Monitor::udp("127.0.0.1:0").unwrap();
    let addr = monitor.local_addr().unwrap();
    let working = busy_main(addr, "working", true);
    let stalled = busy_main(addr, "stalled", false);
    // Both alive at first.
    let limit = deadline(GENEROUS);
    while monitor.reporters().len() < 2 {
        assert!(Instant::now() < limit, "no beats arrived");
        monitor.poll(INTERVAL / 2).unwrap();
    }
    // The stalled one turns STUCK after 3 intervals without progress; the
    // working one stays ALIVE all along.
    while monitor.health("stalled") != Some(Health::Stuck) {
        assert!(Instant::now() < limit, "stall never detected");
        monitor.poll(INTERVAL / 2).unwrap();
        assert_eq!(
            monitor.health("working"),
            Some(Health::Alive),
            "false alarm"
        );
    }
    // Kill the working main: its reporter (a daemon) dies with it.
    working.kill().unwrap();
    let killed = Instant::now();
    while monitor.health("working") != Some(Health::Silent) {
        assert!(Instant::now() < limit, "silence never detected");
        monitor.poll(INTERVAL / 10).unwrap();
    }
    let detect = killed.elapsed();
    eprintln!("silent detected {detect:?} after the kill");
    assert!(
        detect >= INTERVAL * 2,
        "not before the missed intervals: {detect:?}"
    );
    assert!(detect <= INTERVAL * 5, "{detect:?}");
    let alerts = monitor.take_alerts();
    assert!(alerts
        .iter()
        .any(|a| a.id == "working" && a.to == Health::Silent));
    assert!(!alerts
        .iter()
        .any(|a| a.id == "working" && a.to == Health::Stuck));
    stalled.kill().unwrap();
    let _ = (working.join(), stalled.join());
}

#[test]
fn the_database_sink_is_read_by_the_monitor() {
    let dir = std::env::temp_dir().join(format!("procsync-heartbeat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("beats.sqlite");
    let main = {
        let db = db.clone();
        Process::new(move || {
            let beat = Reporter::new("db-writer")
                .interval(INTERVAL)
                .sqlite(&db)
                .start()
                .unwrap();
            let limit = deadline(GENEROUS);
            while Instant::now() < limit {
                beat.progress(1);
                std::thread::sleep(INTERVAL / 4);
            }
        })
        .start()
        .unwrap()
    };
    let mut monitor = Monitor::without_socket();
    let limit = deadline(GENEROUS);
    loop {
        std::thread::sleep(INTERVAL);
        match monitor.read_database(&db) {
            // Not made yet (the daemon is slow to start under load).
            Err(e) if e.is_missing_file() => {}
            result => result.unwrap(),
        }
        if monitor.reporters().first().is_some_and(|r| r.seq >= 3) {
            break;
        }
        assert!(Instant::now() < limit, "no rows written");
    }
    assert_eq!(monitor.health("db-writer"), Some(Health::Alive));
    main.kill().unwrap();
    let _ = main.join();
    while monitor.health("db-writer") != Some(Health::Silent) {
        assert!(Instant::now() < limit, "silence never seen in the database");
        std::thread::sleep(INTERVAL / 2);
        monitor.read_database(&db).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The kernel's default `net.core.rmem_max`: what an unprivileged monitor
/// gets (doubled by the kernel) on a machine nobody tuned.
const KERNEL_DEFAULT_RMEM_MAX: usize = 212_992;

/// `reporters` simulated reporters, started together, beat once at once
/// (a burst, as reporters started together do) and then `rounds` times a
/// second at their own random phase (as `Reporter` does, see
/// `udp.rs::reporters_started_together_beat_at_different_phases`), to a
/// real `Monitor` with the receive buffer of an unprivileged monitor on an
/// untuned kernel. Returns (alerts, beats received, beats sent).
fn load(reporters: u64, rounds: u64) -> (Vec<heartbeat::Alert>, u64, u64) {
    let mut monitor = Monitor::udp("127.0.0.1:0").unwrap();
    // The real monitor, but with the buffer `SO_RCVBUF` gives within the
    // default rmem_max (as root, `udp` would get 8 MiB past it).
    let buffer = monitor.set_receive_buffer(KERNEL_DEFAULT_RMEM_MAX).unwrap();
    assert_eq!(buffer, 2 * KERNEL_DEFAULT_RMEM_MAX);
    let addr = monitor.local_addr().unwrap();
    let seed = testkit::monotonic_ns();
    eprintln!("{reporters} reporters, seed {seed}, receive buffer {buffer} bytes");
    let interval = Duration::from_secs(1);
    let sender = Process::new(move || {
        let mut rng = testkit::Rng::new(seed);
        let mut phases: Vec<(Duration, u64)> = (0..reporters)
            .map(|r| (Duration::from_nanos(rng.below(1_000_000_000)), r))
            .collect();
        phases.sort();
        // Encoded beforehand: many reporters send at the same moment, so a
        // burst arrives as fast as the kernel takes it.
        let datagram = |r: u64, seq: u64| {
            let beat = Beat {
                id: format!("r{r}"),
                host: "sim".into(),
                pid: shm::pid::Pid::from_u32(1).unwrap(),
                seq,
                progress: seq,
                sent_at_ms: 0,
                interval_ms: 1000,
                instance: r + 1,
                mac: None,
            };
            serde_json::to_vec(&beat).unwrap()
        };
        let rounds: Vec<Vec<(Duration, Vec<u8>)>> = (0..=rounds)
            .map(|round| {
                phases
                    .iter()
                    .map(|&(phase, r)| {
                        // Round 0: every reporter at once, as it starts.
                        let due = if round == 0 {
                            Duration::ZERO
                        } else {
                            phase + interval * round as u32
                        };
                        (due, datagram(r, round))
                    })
                    .collect()
            })
            .collect();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let start = Instant::now();
        for (due, bytes) in rounds.iter().flatten() {
            if let Some(wait) = (start + *due).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            socket.send_to(bytes, addr).unwrap();
        }
    })
    .start()
    .unwrap();
    // Watch while every round runs (the last ends before rounds + 1 s).
    let limit = testkit::deadline(testkit::GENEROUS + interval * (rounds as u32 + 1));
    while sender.is_alive() {
        assert!(Instant::now() < limit, "the reporters never finished");
        monitor.poll(Duration::from_millis(100)).unwrap();
    }
    sender.join().unwrap();
    monitor.poll(Duration::from_millis(100)).unwrap();
    let (alive, stuck, silent) = monitor.counts();
    eprintln!("alive {alive}, stuck {stuck}, silent {silent}");
    eprintln!(
        "rejected {}, refused {}",
        monitor.beats_rejected(),
        monitor.reporters_refused()
    );
    assert_eq!(
        alive + stuck + silent,
        reporters as usize,
        "reporters never seen"
    );
    (
        monitor.take_alerts(),
        monitor.beats_received(),
        reporters * (rounds + 1),
    )
}

#[test]
fn ten_thousand_reporters_with_the_default_receive_buffer_raise_no_false_alarm() {
    no_false_alarm(10_000, 5);
}

/// The long run (~41 s): 40 intervals of 10,000 reporters.
#[test]
#[ignore = "41 s; the CI run above covers 5 intervals"]
fn ten_thousand_reporters_for_forty_intervals_raise_no_false_alarm() {
    no_false_alarm(10_000, 40);
}

fn no_false_alarm(reporters: u64, rounds: u64) {
    let (alerts, received, sent) = load(reporters, rounds);
    // UDP drops the beats the buffer cannot hold (most of them in the
    // first burst); the monitor must not alarm over them.
    eprintln!("{received} of {sent} beats received");
    assert!(
        alerts.is_empty(),
        "{} false alarms: {:?}",
        alerts.len(),
        &alerts[..alerts.len().min(5)]
    );
}

// ---- Duration::MAX and enormous intervals never panic (issue #11) ----

#[test]
fn monitor_poll_of_duration_max_receives_for_ever() {
    let mut child = Process::new(|| {
        let mut monitor = Monitor::udp("127.0.0.1:0").unwrap();
        monitor.poll(Duration::MAX).map_err(|e| e.to_string())
    })
    .start()
    .unwrap();
    // Still polling (a panic would have ended it at once).
    assert!(matches!(
        child.join_timeout(Duration::from_millis(300)),
        Err(daemon::JoinError::Timeout { .. })
    ));
    child.kill().unwrap();
    assert!(matches!(
        child.join_timeout(GENEROUS),
        Err(daemon::JoinError::Signaled { .. })
    ));
}

/// The state letter of process `pid` in /proc (`Z` for a zombie).
fn process_state(pid: shm::pid::Pid) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    after_name.trim_start().chars().next().unwrap()
}

#[test]
fn a_reporter_with_an_endless_interval_beats_once_and_lives_on() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(GENEROUS)).unwrap();
    let beat = Reporter::new("endless")
        .interval(Duration::MAX)
        .udp(socket.local_addr().unwrap())
        .start()
        .unwrap();
    let mut buf = [0u8; 2048];
    let n = socket.recv(&mut buf).expect("the first beat");
    let first: Beat = serde_json::from_slice(&buf[..n]).unwrap();
    assert_eq!(first.seq, 0);
    // No second beat, and the reporter has not died computing its time.
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(socket.recv(&mut buf).is_err(), "a second beat came");
    assert_ne!(process_state(beat.pid()), 'Z', "the reporter died");
}

#[test]
fn a_beat_with_an_enormous_interval_is_judged_without_panicking() {
    let mut monitor = Monitor::without_socket()
        .silent_after(u32::MAX)
        .stuck_after(u32::MAX);
    let now = Instant::now();
    monitor.record(
        Beat {
            id: "far".into(),
            host: "h".into(),
            pid: shm::pid::Pid::from_u32(1).unwrap(),
            seq: 0,
            progress: 0,
            sent_at_ms: 0,
            interval_ms: u64::MAX,
            instance: 0,
            mac: None,
        },
        now,
    );
    monitor.judge(now + Duration::from_secs(3600));
    assert_eq!(monitor.health("far"), Some(Health::Alive));
}

/// A main process that is SIGKILLed before it starts its reporter (it
/// parks until killed first): it never sends a beat.
fn dies_before_its_first_beat(addr: std::net::SocketAddr, id: &'static str) -> daemon::Child<()> {
    Process::new(move || {
        testkit::park_until_killed();
        // Never reached: killed before.
        let _beat = Reporter::new(id).interval(INTERVAL).udp(addr).start();
    })
    .start()
    .unwrap()
}

#[test]
fn an_expected_reporter_killed_before_its_first_beat_is_reported_silent() {
    let mut monitor = Monitor::udp("127.0.0.1:0").unwrap();
    let addr = monitor.local_addr().unwrap();
    let doomed = dies_before_its_first_beat(addr, "early-death");
    let expected_at = Instant::now();
    assert!(monitor.expect_reporter("early-death", INTERVAL));
    assert!(
        !monitor.expect_reporter("early-death", INTERVAL),
        "expected once"
    );
    assert_eq!(monitor.health("early-death"), Some(Health::Alive));
    assert_eq!(monitor.counts(), (1, 0, 0));
    assert_eq!(
        monitor.awaited(),
        [("early-death".to_string(), Health::Alive)]
    );
    testkit::sigkill_from_sibling(doomed.pid()).join().unwrap();
    assert!(doomed.join().is_err(), "killed");
    let limit = deadline(GENEROUS);
    while monitor.health("early-death") != Some(Health::Silent) {
        assert!(Instant::now() < limit, "its silence was never reported");
        monitor.poll(INTERVAL / 10).unwrap();
    }
    // Not before silent_after (3) intervals and the slack (one more).
    assert!(
        expected_at.elapsed() > INTERVAL * 4,
        "{:?}",
        expected_at.elapsed()
    );
    let alerts = monitor.take_alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        (alerts[0].id.as_str(), alerts[0].from, alerts[0].to),
        ("early-death", Health::Alive, Health::Silent)
    );
    assert_eq!(monitor.counts(), (0, 0, 1));
    assert_eq!(
        monitor.awaited(),
        [("early-death".to_string(), Health::Silent)]
    );
    assert!(monitor.reporters().is_empty(), "no beat: no reporter start");
}

#[test]
fn an_expected_reporter_that_beats_is_tracked_by_its_beats_without_a_false_alarm() {
    // (Its progress never moves: not STUCK within this test.)
    let mut monitor = Monitor::udp("127.0.0.1:0").unwrap().stuck_after(1_000);
    let addr = monitor.local_addr().unwrap();
    assert!(monitor.expect_reporter("on-time", INTERVAL));
    let expected_at = Instant::now();
    // Another host than this machine's: the expectation is by id alone.
    let reporter = Process::new(move || {
        let _beat = Reporter::new("on-time")
            .host("elsewhere")
            .interval(INTERVAL)
            .udp(addr)
            .start()
            .unwrap();
        testkit::park_until_killed();
    })
    .start()
    .unwrap();
    let limit = deadline(GENEROUS);
    while monitor.reporters().is_empty() {
        assert!(Instant::now() < limit, "no beat arrived");
        monitor.poll(INTERVAL / 10).unwrap();
    }
    assert!(monitor.awaited().is_empty(), "the expectation was met");
    assert_eq!(monitor.reporters()[0].host, "elsewhere");
    // Well past the time the expectation would have turned SILENT: still
    // one reporter, ALIVE, and no alert at all.
    while expected_at.elapsed() < INTERVAL * 8 {
        assert!(Instant::now() < limit, "the monitor never got that far");
        monitor.poll(INTERVAL / 2).unwrap();
    }
    assert_eq!(monitor.counts(), (1, 0, 0));
    assert_eq!(monitor.health("on-time"), Some(Health::Alive));
    assert_eq!(monitor.take_alerts(), []);
    // Once it is tracked, its death is reported as any reporter's.
    reporter.kill().unwrap();
    let _ = reporter.join();
    while monitor.health("on-time") != Some(Health::Silent) {
        assert!(Instant::now() < limit, "silence never detected");
        monitor.poll(INTERVAL / 10).unwrap();
    }
    let alerts = monitor.take_alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].host, "elsewhere");
    assert_eq!(monitor.counts(), (0, 0, 1));
}

#[test]
fn a_late_first_beat_ends_a_silent_expectation_with_an_alert_and_forget_drops_one() {
    let mut monitor = Monitor::without_socket();
    let expected_at = Instant::now();
    assert!(monitor.expect_reporter("late", INTERVAL));
    assert!(monitor.expect_reporter("dropped", INTERVAL));
    assert!(
        !monitor.expect_reporter("x".repeat(4097), INTERVAL),
        "too long"
    );
    let overdue = expected_at + INTERVAL * 5;
    monitor.judge(overdue);
    assert_eq!(monitor.counts(), (0, 0, 2));
    assert_eq!(monitor.take_alerts().len(), 2);
    monitor.record(
        Beat {
            id: "late".into(),
            host: "h".into(),
            pid: shm::pid::Pid::from_u32(7).unwrap(),
            seq: 0,
            progress: 0,
            sent_at_ms: 0,
            interval_ms: INTERVAL.as_millis() as u64,
            instance: 42,
            mac: None,
        },
        overdue,
    );
    let alerts = monitor.take_alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        (alerts[0].host.as_str(), alerts[0].from, alerts[0].to),
        ("h", Health::Silent, Health::Alive)
    );
    monitor.judge(overdue);
    assert_eq!(monitor.counts(), (1, 0, 1));
    assert!(
        !monitor.expect_reporter("late", INTERVAL),
        "tracked already"
    );
    assert_eq!(monitor.forget("dropped"), 1);
    assert_eq!(monitor.awaited(), []);
    assert_eq!(monitor.counts(), (1, 0, 0));
}
