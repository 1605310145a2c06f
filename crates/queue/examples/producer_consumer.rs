//! Beyond the lesson, 队列: two producer processes make buns, a consumer
//! process eats them, through one Queue; the consumer stops once every
//! producer is gone and the queue is empty.
//!
//! `cargo run -p procsync-queue --example producer_consumer`

use daemon::Process;
use queue::Queue;

const BUNS: u32 = 5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let q = Queue::<String>::new(4)?; // q = Queue(4)
    let rx = q.receiver()?;
    // The consumer: for bun in iter(q.get, None), until no producer is left.
    let consumer = Process::new(move || {
        let eaten = rx.iter().inspect(|bun| println!("ate {bun}"));
        eaten.collect::<Vec<_>>()
    })
    .start()?;
    let mut producers = Vec::new();
    for p in 0..2 {
        let tx = q.sender()?;
        producers.push(
            Process::new(move || {
                for k in 0..BUNS {
                    tx.put(format!("bun {p}.{k}")).expect("put"); // q.put(...)
                }
                // tx is dropped here: this producer is done.
            })
            .start()?,
        );
    }
    for producer in producers {
        producer.join()?;
    }
    let mut eaten = consumer.join()?;
    eaten.sort();
    let mut made: Vec<String> = (0..2)
        .flat_map(|p| (0..BUNS).map(move |k| format!("bun {p}.{k}")))
        .collect();
    made.sort();
    assert_eq!(eaten, made, "every bun eaten once");
    Ok(())
}
