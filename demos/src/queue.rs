//! Beyond the lesson: 队列 Queue. Producer processes make buns, consumer
//! processes eat them, through one `Queue` in shared memory; one producer
//! is SIGKILLed half-way through its batch. Nothing arrives torn or twice,
//! and the consumers stop when every producer is gone instead of waiting
//! for ever.

use std::collections::HashSet;
use std::time::Duration;

use daemon::Process;
use queue::{GetError, Queue};
use serde::{Deserialize, Serialize};
use shm::{Futex, Shared};

use crate::context::{Context, DemoError, Summary};

/// Arguments of `demos queue`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// Producer processes (the first is SIGKILLed half-way).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=32))]
    producers: u32,
    /// Consumer processes.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=32))]
    consumers: u32,
    /// Buns each producer makes.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(2..=100_000))]
    buns: u32,
    /// Places on the counter (the queue's capacity).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=4096))]
    capacity: u32,
}

impl Default for Args {
    fn default() -> Args {
        Args {
            producers: 3,
            consumers: 2,
            buns: 20,
            capacity: 4,
        }
    }
}

/// One bun: who made it, its number in that producer's batch, and a filling
/// derived from both, so that a torn message would show.
#[derive(Serialize, Deserialize, Debug)]
struct Bun {
    producer: u32,
    seq: u32,
    filling: String,
}

fn filling(producer: u32, seq: u32) -> String {
    const FILLINGS: [&str; 4] = ["pork", "cabbage", "red bean", "mushroom"];
    format!(
        "{}#{producer}-{seq}",
        FILLINGS[(producer + seq) as usize % 4]
    )
}

/// What a consumer ate.
#[derive(Serialize, Deserialize, Debug, Default)]
struct Eaten {
    buns: Vec<(u32, u32)>,
    torn: u32,
    out_of_order: u32,
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<Summary, DemoError> {
    ctx.say(
        format!(
            "# 队列: {} 个生产者进程做包子, {} 个消费者进程吃包子, 柜台上最多放 {} 个",
            args.producers, args.consumers, args.capacity
        ),
        format!(
            "{} producer processes make buns, {} consumer processes eat them; the counter holds {}.",
            args.producers, args.consumers, args.capacity
        ),
    );
    let counter = Queue::<Bun>::builder()
        .capacity(args.capacity as usize)
        .max_message_bytes(128)
        .anonymous()?;
    // Raised by the doomed producer once it is half-way: the moment to kill.
    let half_way = Shared::new(Futex::new(0))?;
    let doomed_batch = args.buns / 2;
    let pace = ctx.scaled(Duration::from_millis(20));

    let consumers = (0..args.consumers)
        .map(|c| {
            let rx = counter.receiver()?;
            Ok(Process::new(move || {
                let mut eaten = Eaten::default();
                let mut last = std::collections::HashMap::new();
                loop {
                    match rx.get() {
                        Ok(bun) => {
                            if bun.filling != filling(bun.producer, bun.seq) {
                                eaten.torn += 1;
                            }
                            if last
                                .insert(bun.producer, bun.seq)
                                .is_some_and(|l| l >= bun.seq)
                            {
                                eaten.out_of_order += 1;
                            }
                            eaten.buns.push((bun.producer, bun.seq));
                        }
                        // Every producer is gone and the counter is empty.
                        Err(GetError::Disconnected) => return Ok(eaten),
                        Err(e) => return Err(e.to_string()),
                    }
                }
            })
            .name(format!("consumer-{c}"))
            .start()?)
        })
        .collect::<Result<Vec<_>, DemoError>>()?;

    let producers = (0..args.producers)
        .map(|p| {
            let tx = counter.sender()?;
            let half_way = &half_way;
            Ok(Process::new(move || -> Result<u32, String> {
                let batch = if p == 0 { doomed_batch } else { args.buns };
                for seq in 0..batch {
                    let bun = Bun {
                        producer: p,
                        seq,
                        filling: filling(p, seq),
                    };
                    tx.put(bun).map_err(|e| e.to_string())?;
                    std::thread::sleep(pace);
                }
                if p == 0 {
                    // Half-way: wait here for the SIGKILL, still attached.
                    half_way.store(1, std::sync::atomic::Ordering::SeqCst);
                    half_way.wake_all();
                    loop {
                        std::thread::park();
                    }
                }
                Ok(batch)
            })
            .name(format!("producer-{p}"))
            .start()?)
        })
        .collect::<Result<Vec<_>, DemoError>>()?;

    let mut producers = producers.into_iter();
    let doomed = producers.next().expect("at least one producer");
    while half_way.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        half_way.wait(0, None);
    }
    doomed.kill()?;
    ctx.say(
        format!("# 生产者 0 做到一半被 kill -9 (已放上柜台 {doomed_batch} 个)"),
        format!("producer 0 is SIGKILLed half-way, after putting {doomed_batch} buns"),
    );
    let killed = doomed.join().is_err();
    let mut sent = doomed_batch;
    for producer in producers {
        sent += producer.join()??;
    }

    let mut seen = HashSet::new();
    let (mut received, mut duplicated, mut torn, mut out_of_order) = (0u32, 0u32, 0u32, 0u32);
    // Consumers return only once told `Disconnected`: counted as they do.
    let mut disconnected = 0u32;
    for (c, consumer) in consumers.into_iter().enumerate() {
        let eaten = consumer.join()??;
        disconnected += 1;
        ctx.say(
            format!("消费者 {c} 吃了 {} 个包子", eaten.buns.len()),
            format!("consumer {c} ate {} buns", eaten.buns.len()),
        );
        torn += eaten.torn;
        out_of_order += eaten.out_of_order;
        for bun in eaten.buns {
            received += 1;
            if !seen.insert(bun) {
                duplicated += 1;
            }
        }
    }
    ctx.say(
        format!(
            "# 队列在共享内存里, 被杀死的进程既撕不坏消息, 也卡不住别人: 做了 {sent} 个, 吃了 {received} 个"
        ),
        format!(
            "-> a killed process neither tears a message nor wedges the others: {sent} made, {received} eaten, and the consumers stopped when no producer was left."
        ),
    );
    let summary = Summary::default()
        .with("sent", sent)
        .with("received", received)
        .with("torn", torn)
        .with("duplicated", duplicated)
        .with("out_of_order", out_of_order)
        .with("lost_in_flight", sent.saturating_sub(received))
        .with("killed", u32::from(killed))
        .with("disconnected", disconnected);
    summary.print();
    Ok(summary)
}
