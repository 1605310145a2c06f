//! Builds `docs/benchmarks.md` and `docs/benchmarks.svg` from one run:
//! criterion's estimates under `target/criterion`, and the JSON lines of
//! `target/procsync-bench/outcomes.jsonl` (W7, W8, W11) and
//! `target/procsync-bench/python.jsonl` (the Python peer).
//!
//! Run by `benches/run-all.sh`, which makes all three first.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde_json::Value;

/// How a workload's figure reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Nanoseconds per operation (lower is better).
    Ns,
    /// Microseconds per operation (lower is better).
    Us,
    /// Millions of operations per second (higher is better).
    Mops,
    /// Millions of messages per second (higher is better).
    Mmsgs,
    /// Millions of tasks per second (higher is better).
    Mtasks,
}

impl Unit {
    fn label(self) -> &'static str {
        match self {
            Unit::Ns => "ns",
            Unit::Us => "µs",
            Unit::Mops => "Mops/s",
            Unit::Mmsgs => "M msg/s",
            Unit::Mtasks => "M tasks/s",
        }
    }

    /// Criterion reports nanoseconds per iteration (one operation).
    fn convert_ns(self, ns: f64) -> f64 {
        match self {
            Unit::Ns => ns,
            Unit::Us => ns / 1e3,
            Unit::Mops | Unit::Mmsgs | Unit::Mtasks => 1e3 / ns,
        }
    }

    fn lower_is_better(self) -> bool {
        !matches!(self, Unit::Mops | Unit::Mmsgs | Unit::Mtasks)
    }
}

struct Workload {
    id: &'static str,
    group: &'static str,
    title: &'static str,
    unit: Unit,
    /// The procsync contender the goal is about.
    ours: &'static str,
    /// The baselines named in BENCHMARKS.md for this workload.
    baselines: &'static [&'static str],
    /// The row every other is also costed against (by name prefix): the
    /// physical floor, or the figure the goal names.
    floor: &'static str,
    /// A figure from another group shown as a row of this table:
    /// (group, contender, row name).
    reference: Option<(&'static str, &'static str, &'static str)>,
    goal: &'static str,
}

/// W5's procsync Event round trip, the yardstick of W9lat.
const W5_EVENT: &str = "procsync-Event (W5)";

const WORKLOADS: &[Workload] = &[
    Workload {
        id: "W1",
        group: "W1_lock_uncontended",
        title: "lock then unlock, one process",
        unit: Unit::Ns,
        ours: "procsync-Lock",
        baselines: &["pthread-pshared", "pthread-robust", "posix-sem"],
        floor: "atomic-floor",
        reference: None,
        goal: "Lock at most 2.0x atomic-floor",
    },
    Workload {
        id: "W2",
        group: "W2_lock_contended_2p",
        title: "2 processes on 2 CPUs, lock; counter += 1; unlock",
        unit: Unit::Mops,
        ours: "procsync-Lock/2",
        baselines: &["pthread-pshared/2", "pthread-robust/2", "posix-sem/2"],
        floor: "atomic-floor",
        reference: None,
        goal: "at least pthread-robust's throughput, counter exact",
    },
    Workload {
        id: "W3",
        group: "W3_sem_uncontended",
        title: "Semaphore(2): acquire then release, one process",
        unit: Unit::Ns,
        ours: "procsync-Semaphore",
        baselines: &["posix-sem"],
        floor: "atomic-floor",
        reference: None,
        goal: "at most posix-sem",
    },
    Workload {
        id: "W4",
        group: "W4_sem_contended_4p",
        title: "Semaphore(2), 4 processes acquiring and releasing",
        unit: Unit::Mops,
        ours: "procsync-Semaphore/4",
        baselines: &["posix-sem/4"],
        floor: "atomic-floor",
        reference: None,
        goal: "at least posix-sem's throughput, never above the limit",
    },
    Workload {
        id: "W5",
        group: "W5_event_pingpong",
        title: "event ping-pong, 2 processes on 2 CPUs (round trip)",
        unit: Unit::Us,
        ours: "procsync-Event",
        baselines: &["futex", "pthread-cond"],
        floor: "atomic-floor",
        reference: None,
        goal: "at most 1/10 of futex",
    },
    Workload {
        id: "W5s",
        group: "W5s_event_pingpong_samecpu",
        title: "event ping-pong, both on one CPU (round trip)",
        unit: Unit::Us,
        ours: "procsync-Event",
        baselines: &["futex", "pthread-cond"],
        floor: "atomic-floor",
        reference: None,
        goal: "no worse than futex",
    },
    Workload {
        id: "W6",
        group: "W6_spawn_join",
        title: "start a child returning a value; join it",
        unit: Unit::Us,
        ours: "procsync-Process",
        baselines: &["fork-waitpid"],
        floor: "atomic-floor",
        reference: None,
        goal: "at most 1.3x fork-waitpid",
    },
];

/// The second plan's messaging workloads (W9N is a [`Scaling`]).
const MESSAGING: &[Workload] = &[
    Workload {
        id: "W9",
        group: "W9_queue_1p1c",
        title: "1 producer process -> 1 consumer process on 2 CPUs, 64-byte messages",
        unit: Unit::Mmsgs,
        ours: "procsync-Queue",
        baselines: &["socketpair", "ipc-channel"],
        floor: "crossbeam-channel",
        reference: None,
        goal: "at least 100x Python, at least 3x the socketpair, at least 1/3 of \
               crossbeam-channel between threads",
    },
    Workload {
        id: "W9lat",
        group: "W9lat_queue_roundtrip",
        title: "ping through one queue, pong through another, 2 processes on 2 CPUs (round trip)",
        unit: Unit::Us,
        ours: "procsync-Queue",
        baselines: &["socketpair"],
        floor: W5_EVENT,
        reference: Some(("W5_event_pingpong", "procsync-Event", W5_EVENT)),
        goal: "at most 2x procsync's Event round trip (W5)",
    },
];

/// The pool workloads (W10, W10c1).
const POOLS: &[Workload] = &[
    Workload {
        id: "W10",
        group: "W10_pool_map",
        title: "a pool of 2 workers maps x -> x + 1 over the inputs, automatic chunk size",
        unit: Unit::Mtasks,
        ours: "procsync-Pool-auto",
        baselines: &[],
        floor: "rayon",
        reference: None,
        goal: "at least 3x Python's Pool.map with its automatic chunks",
    },
    Workload {
        id: "W10c1",
        group: "W10c1_pool_map_chunk1",
        title: "the same with one task per round trip (chunks of 1; Python: the best of 3 maps)",
        unit: Unit::Mtasks,
        ours: "procsync-Pool-chunk1",
        baselines: &[],
        floor: "python-multiprocessing",
        reference: None,
        goal: "at least 50x Python's Pool.map(chunksize=1)",
    },
];

/// A workload run at several process counts: one table, N across.
struct Scaling {
    id: &'static str,
    group: &'static str,
    title: &'static str,
    goal: &'static str,
    unit: Unit,
    /// The process counts, first to last.
    ns: &'static [u32],
    ours: &'static str,
    /// The contender ours must match or beat at every N.
    baseline: &'static str,
    /// The share of its first-N figure ours must keep at the last N.
    keep: f64,
}

/// W2N: the locks at 2 to 16 processes.
const W2N: Scaling = Scaling {
    id: "W2N",
    group: "W2N_lock_contended_Np",
    title: "W2 with 2, 4, 8 and 16 processes sharing a fixed total",
    goal: "at every N at least pthread-robust's throughput; from N=2 to N=16 keep at least \
               half the N=2 figure",
    unit: Unit::Mops,
    ns: &[2, 4, 8, 16],
    ours: "procsync-Lock",
    baseline: "pthread-robust",
    keep: 0.5,
};

/// W9N: the queue at 1 to 8 producers and as many consumers.
const W9N: Scaling = Scaling {
    id: "W9N",
    group: "W9N_queue_NpNc",
    title: "N producer processes -> N consumer processes through one queue, N = 1, 2, 4, 8 \
                (pinned round robin to the CPUs)",
    goal: "at every N at least the socketpair's throughput (N writers and N readers on one \
               SOCK_SEQPACKET socketpair); no collapse: at N=8 at least half the N=1 figure",
    unit: Unit::Mmsgs,
    ns: &[1, 2, 4, 8],
    ours: "procsync-Queue",
    baseline: "socketpair-seqpacket",
    keep: 0.5,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let criterion = target.join("criterion");
    let outcomes = read_json_lines(&target.join("procsync-bench/outcomes.jsonl"))?;
    let python = read_json_lines(&target.join("procsync-bench/python.jsonl"))?;

    let mut md = String::new();
    writeln!(md, "# Benchmarks")?;
    writeln!(md)?;
    writeln!(
        md,
        "Generated by `benches/run-all.sh` on {} ({}), {}. Every figure below comes from that one run: \
         criterion medians for W1–W6, W2N, W9–W9N and W10, the outcome binary for W7, W8 and W11, and \
         `benches/python/peer.py` for Python's `multiprocessing` (fork start method); W12, the \
         fleet's ten-minute runs, may come from an earlier run (`W12_MINUTES=0` keeps them: the \
         minutes are in its table). On two noisy \
         cores contended figures drift by up to 2x over minutes: compare within this page only.",
        machine(),
        kernel(),
        today()
    )?;
    writeln!(md)?;
    writeln!(
        md,
        "Reproduce: `./benches/run-all.sh` (about seven minutes, and twice `W12_MINUTES` (10) more for W12; `W12_MINUTES=0` keeps the W12 figures there are)."
    )?;
    writeln!(md)?;
    writeln!(
        md,
        "\"Cost\" columns are time per operation relative to the reference (for throughput \
         workloads, the inverse ratio), so below 1.00x is better than the reference."
    )?;
    writeln!(md)?;
    writeln!(md, "![procsync vs baselines vs Python](benchmarks.svg)")?;
    writeln!(md)?;

    let mut verdicts = Vec::new();
    let mut chart_rows = Vec::new();
    for w in WORKLOADS {
        workload_section(
            &mut md,
            &mut verdicts,
            &mut chart_rows,
            w,
            &criterion,
            &python,
        )?;
    }
    scaling_section(&mut md, &mut verdicts, &W2N, &criterion, &python)?;

    // W7 and W8: outcomes.
    writeln!(
        md,
        "## W7 — a child is SIGKILLed holding the lock; the parent locks with a 2 s timeout\n"
    )?;
    outcome_table(&mut md, &outcomes, &python, "W7")?;
    let w7_verdict = outcome_verdict(&outcomes, "W7", "procsync-Lock", "recovered", 1000, |us| {
        format!("recovered, owner death reported, in {us} µs")
    });
    writeln!(md, "**{w7_verdict}**\n")?;
    verdicts.push(format!("| W7 | recovered within 1 ms | {w7_verdict} |"));

    writeln!(
        md,
        "## W8 — a parent with a daemon child is SIGKILLed; is the child gone 1 s later?\n"
    )?;
    outcome_table(&mut md, &outcomes, &python, "W8")?;
    let w8_verdict = outcome_verdict(&outcomes, "W8", "procsync-daemon", "gone", 100_000, |us| {
        format!("gone in {:.1} ms", us as f64 / 1000.0)
    });
    writeln!(md, "**{w8_verdict}**\n")?;
    verdicts.push(format!("| W8 | child gone within 100 ms | {w8_verdict} |"));

    // The second plan: messaging.
    for w in MESSAGING {
        workload_section(
            &mut md,
            &mut verdicts,
            &mut chart_rows,
            w,
            &criterion,
            &python,
        )?;
    }
    scaling_section(&mut md, &mut verdicts, &W9N, &criterion, &python)?;
    for w in POOLS {
        workload_section(
            &mut md,
            &mut verdicts,
            &mut chart_rows,
            w,
            &criterion,
            &python,
        )?;
    }

    // W11: an outcome again.
    writeln!(
        md,
        "## W11 — a pool of 4 runs 4 tasks; one worker is SIGKILLed mid-task\n"
    )?;
    outcome_table(&mut md, &outcomes, &python, "W11")?;
    let w11_verdict = outcome_verdict(
        &outcomes,
        "W11",
        "procsync-Pool",
        "1 task WorkerDied, 3 ok, pool usable",
        10_000,
        |us| {
            format!(
                "1 task WorkerDied, 3 ok, pool usable; the dead task's outcome {:.1} ms after the kill",
                us as f64 / 1000.0
            )
        },
    );
    writeln!(md, "**{w11_verdict}**\n")?;
    verdicts.push(format!(
        "| W11 | 1 task WorkerDied, 3 ok, pool usable; outcome within 10 ms | {w11_verdict} |"
    ));

    // W12: the fleet heartbeat, from its own binary's lines.
    let fleet = read_json_lines(&target.join("procsync-bench/fleet.jsonl"))?;
    w12_section(&mut md, &mut verdicts, &fleet)?;

    let mut page = String::new();
    let (head, body) = md.split_at(md.find("## ").unwrap_or(md.len()));
    page.push_str(head);
    writeln!(
        page,
        "## Goals at a glance\n\n| id | goal | this run |\n|---|---|---|"
    )?;
    for v in &verdicts {
        writeln!(page, "{v}")?;
    }
    writeln!(page)?;
    page.push_str(body);

    let docs = root.join("docs");
    std::fs::write(docs.join("benchmarks.md"), page)?;
    draw_chart(&docs.join("benchmarks.svg"), &chart_rows)?;
    println!(
        "wrote {} and {}",
        docs.join("benchmarks.md").display(),
        docs.join("benchmarks.svg").display()
    );
    Ok(())
}

/// W12's section: one row per store, and the verdict (0 false alarms, every
/// alert within 2 intervals, one write per machine per interval).
fn w12_section(
    md: &mut String,
    verdicts: &mut Vec<String>,
    fleet: &[Value],
) -> Result<(), std::fmt::Error> {
    writeln!(
        md,
        "## W12 — the fleet heartbeat: 100 machines x 100 reporters, 1 s interval\n\n\
         `demos fleet --hosts 100 --per-host 100 --watch SECONDS` (release build) run by \
         `benches/src/bin/fleet.rs`: each machine a collector process (its reporters simulated \
         in it, beating over loopback UDP, signed), the store a PostgreSQL cluster of the run's \
         own at full durability (`fsync`, synchronous commit) or one SQLite file; two reporters \
         and one machine killed after the watch. CPU per 1,000 beats: the machines' processes \
         (collector and the simulated reporters' sending) and the monitor's.\n"
    )?;
    if fleet.is_empty() {
        writeln!(
            md,
            "_No W12 results in this run (`benches/src/bin/fleet.rs` was not run)._\n"
        )?;
        return Ok(());
    }
    writeln!(
        md,
        "| store | minutes | false alarms | reporters / machine found | slowest alert | interval | \
         store writes/s | rows/s | monitor reads/s | beats/s | machines' CPU per 1,000 beats | \
         monitor CPU per 1,000 beats |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let mut met = true;
    for row in fleet {
        let interval = n(row, "interval_ms");
        writeln!(
            md,
            "| {} | {} | {} | {} / {} | {} ms | {} ms | {} | {} | {} | {} | {:.1} ms | {:.1} ms |",
            row.get("store").and_then(Value::as_str).unwrap_or("?"),
            row.get("minutes").and_then(Value::as_f64).unwrap_or(0.0),
            n(row, "false_alarms"),
            n(row, "silent_detected"),
            n(row, "host_silent_detected"),
            n(row, "detect_ms"),
            interval,
            n(row, "store_writes_per_s"),
            n(row, "store_rows_per_s"),
            n(row, "monitor_reads_per_s"),
            n(row, "beats_per_s"),
            n(row, "machine_cpu_us_per_1000_beats") as f64 / 1000.0,
            n(row, "monitor_cpu_us_per_1000_beats") as f64 / 1000.0,
        )?;
        met &= n(row, "false_alarms") == 0
            && n(row, "silent_detected") == 2
            && n(row, "host_silent_detected") == 1
            && n(row, "detect_ms") <= 2 * interval
            && n(row, "store_writes_per_s")
                <= n(row, "hosts") * 1000 / interval.max(1) + n(row, "hosts") / 10;
    }
    writeln!(md)?;
    let worst = |k: &str| fleet.iter().map(|r| n(r, k)).max().unwrap_or(0);
    let verdict = format!(
        "{}: {} false alarms in {} runs of {} minutes (PostgreSQL, SQLite); slowest alert {} ms \
         at a {} ms interval; {} statements/s for {} machines",
        if met { "met" } else { "missed" },
        worst("false_alarms"),
        fleet.len(),
        fleet
            .iter()
            .filter_map(|r| r.get("minutes").and_then(Value::as_f64))
            .fold(0.0, f64::max),
        worst("detect_ms"),
        worst("interval_ms"),
        worst("store_writes_per_s"),
        worst("hosts"),
    );
    writeln!(md, "**W12: {verdict}.**\n")?;
    verdicts.push(format!(
        "| W12 | 0 false alarms; every alert within 2 intervals; one statement per machine per interval | {verdict} |"
    ));
    Ok(())
}

/// The section of a one-figure-per-contender workload: its table (with
/// the Python figure and any reference row), its verdict (also pushed to
/// `verdicts`) and its chart row. Says so when the group has no results.
fn workload_section(
    md: &mut String,
    verdicts: &mut Vec<String>,
    chart_rows: &mut Vec<ChartRow>,
    w: &Workload,
    criterion: &Path,
    python: &[Value],
) -> Result<(), Box<dyn std::error::Error>> {
    let estimates = read_group(&criterion.join(w.group))?;
    if estimates.is_empty() {
        writeln!(
            md,
            "## {} — {}\n\nNo criterion results found under `{}`.\n",
            w.id, w.title, w.group
        )?;
        return Ok(());
    }
    let mut rows: Vec<(String, f64)> = estimates
        .iter()
        .map(|(name, ns)| (name.clone(), w.unit.convert_ns(*ns)))
        .collect();
    if let Some(py) = python_value(python, w.id) {
        rows.push((python_name(w.id).to_string(), py));
    }
    if let Some((group, contender, row)) = w.reference {
        if let Some((_, ns)) = read_group(&criterion.join(group))?
            .into_iter()
            .find(|(n, _)| n == contender)
        {
            rows.push((row.to_string(), w.unit.convert_ns(ns)));
        }
    }
    // Python's other contenders for the workload (spawn's W6, the
    // ProcessPoolExecutor's W10c1), named as the peer names them.
    for r in python.iter().filter(|r| {
        r["workload"] == w.id && r["contender"] != python_name(w.id) && r["value"].is_f64()
    }) {
        if let (Some(name), Some(value)) = (r["contender"].as_str(), r["value"].as_f64()) {
            rows.push((name.to_string(), value));
        }
    }
    let floor = rows
        .iter()
        .find(|(n, _)| n.starts_with(w.floor))
        .map(|r| r.1);
    let best_baseline = rows
        .iter()
        .filter(|(n, _)| w.baselines.contains(&n.as_str()))
        .map(|r| r.1)
        .reduce(|a, b| better(w.unit, a, b));
    writeln!(md, "## {} — {}\n", w.id, w.title)?;
    writeln!(md, "Goal: {}.\n", w.goal)?;
    writeln!(
        md,
        "| contender | median | cost vs {} | cost vs best baseline |",
        w.floor
    )?;
    writeln!(md, "|---|---:|---:|---:|")?;
    sort_rows(w.unit, &mut rows);
    for (name, value) in &rows {
        writeln!(
            md,
            "| {name} | {} {} | {} | {} |",
            fmt(*value),
            w.unit.label(),
            floor.map_or("".into(), |f| ratio(w.unit, *value, f)),
            best_baseline.map_or("".into(), |b| ratio(w.unit, *value, b)),
        )?;
    }
    writeln!(md)?;
    let ours = rows.iter().find(|(n, _)| n == w.ours).map(|r| r.1);
    let verdict = judge(w, &rows);
    writeln!(md, "**{}**\n", verdict)?;
    verdicts.push(format!("| {} | {} | {} |", w.id, w.goal, verdict));
    if let Some(ours) = ours {
        chart_rows.push(ChartRow {
            label: w.id.to_string(),
            ours,
            best_baseline,
            python: python_value(python, w.id),
            unit: w.unit,
        });
    }
    Ok(())
}

/// The table of a [`Scaling`] workload, its ratio to the baseline at each
/// N, and its verdict (also pushed to `verdicts`). Nothing when the group
/// has no results (an older run).
fn scaling_section(
    md: &mut String,
    verdicts: &mut Vec<String>,
    spec: &Scaling,
    criterion: &Path,
    python: &[Value],
) -> Result<(), Box<dyn std::error::Error>> {
    let results = read_group(&criterion.join(spec.group))?;
    if results.is_empty() {
        return Ok(());
    }
    writeln!(
        md,
        "## {} — {}
",
        spec.id, spec.title
    )?;
    writeln!(md, "Goal: {}. {}.\n", spec.goal, spec.unit.label())?;
    let header: Vec<String> = spec.ns.iter().map(|n| format!("N={n}")).collect();
    writeln!(md, "| contender | {} |", header.join(" | "))?;
    writeln!(md, "|---|{}", "---:|".repeat(spec.ns.len()))?;
    let mut by_contender: BTreeMap<String, BTreeMap<u32, f64>> = BTreeMap::new();
    for (name, ns) in &results {
        if let Some((contender, n)) = name.rsplit_once('/') {
            if let Ok(n) = n.parse::<u32>() {
                by_contender
                    .entry(contender.to_string())
                    .or_default()
                    .insert(n, spec.unit.convert_ns(*ns));
            }
        }
    }
    let py: BTreeMap<u32, f64> = python
        .iter()
        .filter(|r| r["workload"] == spec.id)
        .filter_map(|r| Some((r["workers"].as_u64()? as u32, r["value"].as_f64()?)))
        .collect();
    if !py.is_empty() {
        by_contender.insert("python-multiprocessing".into(), py);
    }
    for (contender, figures) in &by_contender {
        let cells: Vec<String> = spec
            .ns
            .iter()
            .map(|n| figures.get(n).map_or("".into(), |v| fmt(*v)))
            .collect();
        writeln!(md, "| {contender} | {} |", cells.join(" | "))?;
    }
    let ours = by_contender.get(spec.ours);
    let baseline = by_contender.get(spec.baseline);
    let verdict = match (ours, baseline) {
        (Some(ours), Some(baseline)) => {
            let cells: Vec<String> = spec
                .ns
                .iter()
                .map(|n| match (ours.get(n), baseline.get(n)) {
                    (Some(o), Some(b)) => format!("{}x", fmt(o / b)),
                    _ => String::new(),
                })
                .collect();
            writeln!(
                md,
                "| {} ÷ {} (throughput) | {} |",
                spec.ours,
                spec.baseline,
                cells.join(" | ")
            )?;
            let beats = spec
                .ns
                .iter()
                .all(|n| matches!((ours.get(n), baseline.get(n)), (Some(o), Some(b)) if o >= b));
            let (first, last) = (spec.ns[0], spec.ns[spec.ns.len() - 1]);
            let kept = ours
                .get(&last)
                .zip(ours.get(&first))
                .map(|(last, first)| last / first);
            let keeps = kept.is_some_and(|k| k >= spec.keep);
            format!(
                "{}: {} {} {} at every N; N={last} is {} of N={first}",
                if beats && keeps { "met" } else { "missed" },
                spec.ours,
                if beats {
                    "at or above"
                } else {
                    "not always above"
                },
                spec.baseline,
                kept.map_or("?".into(), |k| format!("{:.0}%", 100.0 * k)),
            )
        }
        _ => "not measured".into(),
    };
    writeln!(md, "\n**{verdict}**\n")?;
    verdicts.push(format!(
        "| {} | at least {} at every N, no collapse | {verdict} |",
        spec.id, spec.baseline
    ));
    Ok(())
}

fn judge(w: &Workload, rows: &[(String, f64)]) -> String {
    let get = |name: &str| rows.iter().find(|(n, _)| n == name).map(|r| r.1);
    let Some(ours) = get(w.ours) else {
        return "not measured".into();
    };
    let (met, how) = match w.id {
        "W1" => {
            let floor = get("atomic-floor").unwrap_or(f64::NAN);
            let r = ours / floor;
            let probe = get("two-rmw-probe").map_or(String::new(), |p| {
                format!(" (a bare two-RMW probe: {:.2}x)", p / floor)
            });
            (r <= 2.0, format!("Lock is {r:.2}x the floor{probe}"))
        }
        "W2" => {
            let b = get("pthread-robust/2").unwrap_or(f64::NAN);
            (ours >= b, format!("{:.2}x pthread-robust", ours / b))
        }
        "W3" => {
            let b = get("posix-sem").unwrap_or(f64::NAN);
            (ours <= b, format!("{:.2}x posix-sem's time", ours / b))
        }
        "W4" => {
            let b = get("posix-sem/4").unwrap_or(f64::NAN);
            (
                ours >= b,
                format!("{:.2}x posix-sem's throughput", ours / b),
            )
        }
        "W5" => {
            let b = get("futex").unwrap_or(f64::NAN);
            (
                ours <= b / 10.0,
                format!("1/{:.0} of futex's round trip", b / ours),
            )
        }
        "W5s" => {
            let b = get("futex").unwrap_or(f64::NAN);
            (ours <= b, format!("{:.2}x futex's round trip", ours / b))
        }
        "W6" => {
            let b = get("fork-waitpid").unwrap_or(f64::NAN);
            let probe = get("fork-pipe-probe").map_or(String::new(), |p| {
                format!(" (a bare fork + pipe + waitpid probe: {:.2}x)", p / b)
            });
            (
                ours <= 1.3 * b,
                format!("{:.2}x fork-waitpid{probe}", ours / b),
            )
        }
        "W9" => {
            let (py, sock, cb) = (
                get(python_name(w.id)),
                get("socketpair"),
                get("crossbeam-channel"),
            );
            let (Some(py), Some(sock), Some(cb)) = (py, sock, cb) else {
                return "not judged: Python, socketpair or crossbeam-channel not measured".into();
            };
            (
                ours >= 100.0 * py && ours >= 3.0 * sock && ours >= cb / 3.0,
                format!(
                    "Queue is {:.0}x Python, {:.1}x the socketpair, {:.2} of crossbeam-channel",
                    ours / py,
                    ours / sock,
                    ours / cb
                ),
            )
        }
        "W10" | "W10c1" => {
            let Some(py) = get(python_name(w.id)) else {
                return "not judged: Python not measured".into();
            };
            let (times, what) = if w.id == "W10" {
                (3.0, "Pool.map with automatic chunks")
            } else {
                (50.0, "Pool.map(chunksize=1)")
            };
            (
                ours >= times * py,
                format!("{:.1}x Python's {what}", ours / py),
            )
        }
        "W9lat" => {
            let Some(event) = get(W5_EVENT) else {
                return "not judged: W5's procsync-Event not measured".into();
            };
            let others = [
                (python_name(w.id), "Python"),
                ("socketpair", "the socketpair"),
            ]
            .iter()
            .filter_map(|(row, label)| Some(format!("1/{:.0} of {label}", get(row)? / ours)))
            .collect::<Vec<_>>();
            (
                ours <= 2.0 * event,
                format!(
                    "{:.1}x the Event round trip{}",
                    ours / event,
                    if others.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", others.join(", "))
                    }
                ),
            )
        }
        _ => (false, "no rule".into()),
    };
    format!("{}: {how}", if met { "met" } else { "missed" })
}

fn outcome_table(
    md: &mut String,
    outcomes: &[Value],
    python: &[Value],
    id: &str,
) -> std::fmt::Result {
    writeln!(md, "| contender | outcome |")?;
    writeln!(md, "|---|---|")?;
    for r in outcomes
        .iter()
        .chain(python)
        .filter(|r| r["workload"] == id)
    {
        let outcome = r["outcome"].as_str().unwrap_or("?");
        let detail = match (outcome, r["micros"].as_u64()) {
            ("recovered", Some(us)) => format!("recovered in {us} µs"),
            ("gone", Some(us)) => format!("gone in {:.1} ms", us as f64 / 1000.0),
            (other, Some(us)) => format!(
                "{other}; the first failed task's outcome {:.1} ms after the kill",
                us as f64 / 1000.0
            ),
            (other, _) => other.to_string(),
        };
        writeln!(
            md,
            "| {} | {detail} |",
            r["contender"].as_str().unwrap_or("?")
        )?;
    }
    writeln!(md)
}

/// The verdict on an outcome workload: met when `contender` had the
/// outcome `wanted` within `limit_us` (said by `described`), missed with
/// any other outcome or later.
fn outcome_verdict(
    rows: &[Value],
    id: &str,
    contender: &str,
    wanted: &str,
    limit_us: u64,
    described: impl Fn(u64) -> String,
) -> String {
    match outcome_of(rows, id, contender) {
        Some((outcome, Some(us))) if outcome == wanted => format!(
            "{}: {}",
            if us <= limit_us { "met" } else { "missed" },
            described(us)
        ),
        Some((outcome, _)) => format!("missed: {outcome}"),
        None => "not measured".into(),
    }
}

fn outcome_of(rows: &[Value], id: &str, contender: &str) -> Option<(String, Option<u64>)> {
    rows.iter()
        .find(|r| r["workload"] == id && r["contender"] == contender)
        .map(|r| {
            (
                r["outcome"].as_str().unwrap_or("?").to_string(),
                r["micros"].as_u64(),
            )
        })
}

fn python_name(_id: &str) -> &'static str {
    "python-multiprocessing"
}

fn python_value(python: &[Value], id: &str) -> Option<f64> {
    python
        .iter()
        .find(|r| r["workload"] == id && r["contender"] == "python-multiprocessing")
        .and_then(|r| r["value"].as_f64())
}

fn better(unit: Unit, a: f64, b: f64) -> f64 {
    if unit.lower_is_better() {
        a.min(b)
    } else {
        a.max(b)
    }
}

fn sort_rows(unit: Unit, rows: &mut [(String, f64)]) {
    rows.sort_by(|a, b| {
        let order = a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal);
        if unit.lower_is_better() {
            order
        } else {
            order.reverse()
        }
    });
}

/// "1.23x slower/faster" style ratio, always as cost relative to `base`.
fn ratio(unit: Unit, value: f64, base: f64) -> String {
    let cost = if unit.lower_is_better() {
        value / base
    } else {
        base / value
    };
    format!("{}x", fmt(cost))
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// Criterion's median estimates (ns per iteration) for every benchmark of a
/// group: `name` or `name/parameter`.
fn read_group(dir: &Path) -> Result<Vec<(String, f64)>, Box<dyn std::error::Error>> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(found);
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "report" || !entry.path().is_dir() {
            continue;
        }
        let direct = entry.path().join("new/estimates.json");
        if direct.exists() {
            found.push((name.clone(), median(&direct)?));
            continue;
        }
        for param in std::fs::read_dir(entry.path())?.flatten() {
            let file = param.path().join("new/estimates.json");
            if file.exists() {
                found.push((
                    format!("{name}/{}", param.file_name().to_string_lossy()),
                    median(&file)?,
                ));
            }
        }
    }
    Ok(found)
}

fn median(file: &Path) -> Result<f64, Box<dyn std::error::Error>> {
    let json: Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    json["median"]["point_estimate"]
        .as_f64()
        .ok_or_else(|| format!("no median in {}", file.display()).into())
}

fn read_json_lines(file: &Path) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let Ok(text) = std::fs::read_to_string(file) else {
        eprintln!("note: {} not found; its rows are left out", file.display());
        return Ok(Vec::new());
    };
    Ok(text
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(0);
    format!("{cpus} x {model}, {} GiB", mem_kb / (1024 * 1024))
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| "Linux".into())
}

/// Today's date (UTC) as YYYY-MM-DD, from the system clock.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

struct ChartRow {
    label: String,
    ours: f64,
    best_baseline: Option<f64>,
    python: Option<f64>,
    unit: Unit,
}

/// Bars of cost relative to procsync (1 = procsync; log scale): the best
/// baseline and Python per workload.
fn draw_chart(path: &Path, rows: &[ChartRow]) -> Result<(), Box<dyn std::error::Error>> {
    let bars: Vec<(String, f64, RGBColor)> = rows
        .iter()
        .flat_map(|r| {
            let cost = |v: f64| {
                if r.unit.lower_is_better() {
                    v / r.ours
                } else {
                    r.ours / v
                }
            };
            let mut v = vec![(
                format!("{} procsync", r.label),
                1.0,
                RGBColor(0x1f, 0x77, 0xb4),
            )];
            if let Some(b) = r.best_baseline {
                v.push((
                    format!("{} best baseline", r.label),
                    cost(b),
                    RGBColor(0x7f, 0x7f, 0x7f),
                ));
            }
            if let Some(p) = r.python {
                v.push((
                    format!("{} Python", r.label),
                    cost(p),
                    RGBColor(0xff, 0x7f, 0x0e),
                ));
            }
            v
        })
        .collect();
    let height = 60 + 22 * bars.len() as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max) * 2.0;
    let min = bars.iter().map(|b| b.1).fold(1.0, f64::min) / 2.0;
    let n = bars.len() as i32;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Cost relative to procsync (1 = procsync, lower is better, log scale)",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(190)
        .build_cartesian_2d((min..max).log_scale(), (0..n).into_segmented())?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_formatter(&|v| format!("{v:.2}"))
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v, color))| {
        let i = i as i32;
        Rectangle::new(
            [
                (min, SegmentValue::Exact(i)),
                (*v, SegmentValue::Exact(i + 1)),
            ],
            color.filled(),
        )
    }))?;
    root.present()?;
    Ok(())
}
