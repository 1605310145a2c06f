//! Review 5: the header keeps 128 bytes of the message type's name; a
//! longer name must still make and open queues.

use daemon::Process;
use queue::Queue;
use testkit::unique_name;

/// A message type whose name, without module paths, is longer than the
/// 128 bytes the header keeps.
type Long = (
    Option<Vec<String>>,
    Option<Vec<String>>,
    Option<Vec<String>>,
    Option<Vec<String>>,
    Option<Vec<String>>,
    Option<Vec<String>>,
    Option<Vec<String>>,
    Option<Vec<String>>,
);

fn long(i: u8) -> Long {
    let v = Some(vec![i.to_string()]);
    (v.clone(), None, v.clone(), None, v.clone(), None, v, None)
}

#[test]
fn a_message_type_with_a_long_name_makes_and_opens_queues() {
    assert!(shm::layout::short_type_name::<Long>().len() > 128);
    let q = Queue::<Long>::new(2).expect("an anonymous queue of a long-named type");
    let rx = q.receiver().unwrap();
    let tx = q.sender().unwrap();
    Process::new(move || tx.put(long(1)).unwrap())
        .start()
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(rx.try_get(), Ok(long(1)));
    let name = unique_name("queue-long-type");
    let named = Queue::<Long>::builder()
        .capacity(2)
        .create(&name)
        .expect("a named queue of a long-named type");
    let opened = Queue::<Long>::open(&name).expect("open it");
    opened.sender().unwrap().put(long(2)).unwrap();
    assert_eq!(named.receiver().unwrap().try_get(), Ok(long(2)));
}
