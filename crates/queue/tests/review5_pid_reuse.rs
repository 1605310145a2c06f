//! Review 5: a dead producer's pid, reused by a new process, does not make
//! the dead producer look alive (rows record identities, not pids).

use daemon::Process;
use queue::{GetError, Queue};
use testkit::{park_until_killed, skip_unless_pids_can_be_forced, start_with_pid, GENEROUS};

#[test]
fn a_dead_producers_reused_pid_does_not_keep_the_queue_connected() {
    if skip_unless_pids_can_be_forced() {
        return;
    }
    let q = Queue::<u64>::new(4).unwrap();
    let rx = q.receiver().unwrap();
    let tx = q.sender().unwrap();
    let producer = Process::new(move || {
        tx.put(1).unwrap();
        park_until_killed();
    })
    .start()
    .unwrap();
    assert_eq!(rx.get_timeout(GENEROUS), Ok(1));
    let dead = producer.pid();
    producer.kill().unwrap();
    let _ = producer.join();
    let started = shm::Shared::new(shm::Futex::new(0)).unwrap();
    let reuser = start_with_pid(dead, || {
        testkit::raise(&started);
        park_until_killed();
    });
    testkit::wait_for(&started, 1);
    let got = rx.get_timeout(GENEROUS);
    reuser.kill().unwrap();
    let _ = reuser.join();
    assert_eq!(got, Err(GetError::Disconnected));
}
