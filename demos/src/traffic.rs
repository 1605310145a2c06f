//! Seed §5, 事件: a traffic light process toggles an Event; cars wait on
//! red and pass on green; a police car waits at most 0.5 s.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use daemon::Process;
use shm::{Futex, Shared, ShmSafe};
use sync_event::Event;
use sync_lock::Lock;

use crate::context::{print_line, Context, DemoError, Summary};

/// Arguments of `demos traffic`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Args {
    /// How many cars (one process each).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    cars: u32,
}

impl Default for Args {
    fn default() -> Args {
        Args { cars: 10 }
    }
}

/// The seed's light: `time.sleep(2)` between changes.
const PHASE: Duration = Duration::from_secs(2);
/// After the event is cleared, the light counts as red only once this part
/// of a phase has passed (a real light's amber): a car that woke on green
/// just before the change is still crossing legally. A car crossing later
/// than that, or on an event that never blocked it, counts as on red.
const CLEARANCE: Duration = Duration::from_millis(500);
/// The seed's police car: `e.wait(timeout=0.5)`.
const POLICE_PATIENCE: Duration = Duration::from_millis(500);

#[derive(ShmSafe)]
#[repr(C)]
struct Crossing {
    /// Set: green. Clear: red (after the clearance time).
    green: Event,
    /// 1 while the light is red for crossing cars: raised a clearance time
    /// after the event is cleared, lowered when it is set.
    red: AtomicU32,
    /// Held while the light changes and while a car crosses, so "the light's
    /// state when the car passed" is one well-defined value.
    crossing: Lock,
    /// Raised by the light once it has printed its first state: no car is
    /// started before, so none can move (or print) ahead of the light.
    lit: Futex,
    /// Raised by the main process when every car has passed.
    done: Futex,
    passed: AtomicU32,
    passed_on_red: AtomicU32,
    police_max_wait_us: AtomicU64,
}

/// The seed's `print("\033[1;31m 红灯亮\033[0m")`: in colour on a terminal,
/// plain otherwise. `ansi` is 31 for red, 32 for green.
fn announce(ctx: &Context, colour: bool, ansi: u8, zh: &str, en: &str) {
    let text = ctx_text(ctx, zh, en);
    if colour {
        print_line(format_args!("\x1b[1;{ansi}m {text}\x1b[0m"));
    } else {
        print_line(format_args!(" {text}"));
    }
}

fn red(ctx: &Context, colour: bool) {
    announce(ctx, colour, 31, "红灯亮", "red light");
}

fn green(ctx: &Context, colour: bool) {
    announce(ctx, colour, 32, "绿灯亮", "green light");
}

fn ctx_text<'a>(ctx: &Context, zh: &'a str, en: &'a str) -> &'a str {
    match ctx.lang {
        crate::context::Lang::Zh => zh,
        crate::context::Lang::En => en,
    }
}

/// The seed's `ligth(e)`: red first, then a change every two seconds, until
/// the main process says every car has passed.
fn light(ctx: &Context, x: &Crossing, colour: bool) {
    // A test seam (tests/traffic.rs): the light process comes late to its
    // first state, as a busy machine may schedule it; no car may move first.
    if let Some(ms) = std::env::var("PROCSYNC_DEMO_LIGHT_LATE_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    red(ctx, colour);
    // Printed (stdout writes each line at once): the cars may start.
    x.lit.fetch_add(1, Ordering::Release);
    x.lit.wake_all();
    loop {
        let until = Instant::now().checked_add(ctx.scaled(PHASE));
        while x.done.load(Ordering::Acquire) == 0 && x.done.wait(0, until) {}
        if x.done.load(Ordering::Acquire) != 0 {
            return;
        }
        if x.green.is_set() {
            red(ctx, colour);
            x.green.clear();
            let clear_at = Instant::now().checked_add(ctx.scaled(CLEARANCE));
            while x.done.load(Ordering::Acquire) == 0 && x.done.wait(0, clear_at) {}
            let _crossing = x.crossing.lock().unwrap_or_else(|died| died.into_inner());
            x.red.store(1, Ordering::SeqCst);
        } else {
            let _crossing = x.crossing.lock().unwrap_or_else(|died| died.into_inner());
            green(ctx, colour);
            x.red.store(0, Ordering::SeqCst);
            x.green.set();
        }
    }
}

/// The seed's `car(id, e)`: wait while red, then pass. The crossing
/// records the light's state at that moment: a car released by a wrong
/// wake-up would be caught crossing on red.
fn car(ctx: &Context, x: &Crossing, id: u32) {
    if !x.green.is_set() {
        ctx.say(format!("car {id}等待"), format!("car {id} waits"));
        x.green.wait();
    }
    {
        let _crossing = x.crossing.lock().unwrap_or_else(|died| died.into_inner());
        x.passed.fetch_add(1, Ordering::SeqCst);
        if x.red.load(Ordering::SeqCst) != 0 {
            x.passed_on_red.fetch_add(1, Ordering::SeqCst);
        }
    }
    ctx.say(format!("car {id}通过"), format!("car {id} passes"));
}

/// The seed's `police_car(id, e)`: waits at most half a second, then
/// passes whatever the light.
fn police_car(ctx: &Context, x: &Crossing, id: u32) {
    let started = Instant::now();
    if !x.green.is_set() {
        x.green.wait_timeout(ctx.scaled(POLICE_PATIENCE));
    }
    let waited = started.elapsed();
    x.police_max_wait_us
        .fetch_max(waited.as_micros() as u64, Ordering::SeqCst);
    ctx.say(
        format!("police car {id} 通过"),
        format!("police car {id} passes"),
    );
}

/// The seed's `random.randrange(0, 3, 2)`: 0 or 2 seconds between cars.
fn gap(car: u32) -> Duration {
    let x = u64::from(car).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(std::process::id());
    Duration::from_secs(if (x >> 17) & 1 == 0 { 0 } else { 2 })
}

pub(crate) fn run(ctx: &Context, args: &Args) -> Result<Summary, DemoError> {
    let colour = std::io::stdout().is_terminal();
    let crossing = Shared::new(Crossing {
        green: Event::new(),
        red: AtomicU32::new(1),
        crossing: Lock::new(),
        lit: Futex::new(0),
        done: Futex::new(0),
        passed: AtomicU32::new(0),
        passed_on_red: AtomicU32::new(0),
        police_max_wait_us: AtomicU64::new(0),
    })?;
    let x: &Crossing = &crossing;
    let light = Process::new(|| light(ctx, x, colour))
        .name("traffic-light")
        .start()?;
    // The light shows its first state before any car exists: started
    // together, a car scheduled before the light printed "waits" ahead of
    // the seed's first "红灯亮".
    while x.lit.load(Ordering::Acquire) == 0 {
        if !light.is_alive() {
            light.join()?;
            return Err("the traffic light ended before showing its first state".into());
        }
        x.lit
            .wait(0, Instant::now().checked_add(Duration::from_millis(100)));
    }
    let police_after = args.cars / 2;
    let mut cars = Vec::new();
    let mut police = None;
    for id in 0..args.cars {
        cars.push(
            Process::new(move || car(ctx, x, id))
                .name(format!("car-{id}"))
                .start()?,
        );
        if id == police_after {
            police = Some(
                Process::new(|| police_car(ctx, x, 0))
                    .name("police-car")
                    .start()?,
            );
        }
        std::thread::sleep(ctx.scaled(gap(id)));
    }
    for car in cars {
        car.join()?;
    }
    if let Some(police) = police {
        police.join()?;
    }
    x.done.store(1, Ordering::Release);
    x.done.wake_all();
    light.join()?;

    let passed = x.passed.load(Ordering::SeqCst);
    let passed_on_red = x.passed_on_red.load(Ordering::SeqCst);
    let police_ms = x.police_max_wait_us.load(Ordering::SeqCst) / 1000;
    ctx.say(
        format!("# 事件: 红灯时 e.wait() 阻塞, 绿灯时 e.set() 放行 — {passed} 辆车通过, 闯红灯 {passed_on_red} 辆"),
        format!("-> wait() blocked on red and set() let them through: {passed} passed, {passed_on_red} on red."),
    );
    let summary = Summary::default()
        .with("cars", args.cars)
        .with("passed", passed)
        .with("passed_on_red", passed_on_red)
        .with("police_max_wait_ms", police_ms);
    summary.print();
    Ok(summary)
}
