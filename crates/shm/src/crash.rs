//! Crash points: places in a primitive's slow path where a test build can
//! make the process die (SIGKILL) or stop (SIGSTOP) on purpose.
//!
//! procsync promises that a process killed or stopped at *any* instruction
//! wedges nobody and loses nothing. Random kills (the chaos test) find most
//! windows; crash points hit each window of a multi-store slow path in
//! turn. A primitive puts [`crash_point!`](crate::crash_point) after every
//! shared store of such a path and lists the names in a `const` array; the
//! suite arms each listed name in a child process, lets the child run into
//! it, and checks the survivors.
//!
//! - Without the cargo feature `crash-points` (the default) the macro
//!   expands to nothing but a compile-time check that the name is listed.
//! - With it, each point costs one relaxed load of a process-global byte
//!   until something is armed. Test suites turn the feature on through a
//!   dev-dependency (`shm = { ..., features = ["crash-points"] }`).
//!
//! A point is armed either by `arm` (in a forked child, after the fork:
//! the setting is per process) or by the environment: `PROCSYNC_CRASH_POINT`
//! names the point and `PROCSYNC_CRASH_ACTION` is `kill` (the default) or
//! `stop`. The environment is read at the first point a process reaches.
//!
//! ```ignore
//! const CRASH_POINTS: &[&str] = &["mine: journal written"];
//! journal.store(x, Ordering::Release);
//! shm::crash_point!(CRASH_POINTS, "mine: journal written");
//! ```

/// Whether `name` is one of `list`: the compile-time check behind
/// [`crash_point!`](crate::crash_point), so a point cannot exist without
/// being in the list a test iterates over.
pub const fn listed(list: &[&str], name: &str) -> bool {
    let mut i = 0;
    while i < list.len() {
        if same(list[i].as_bytes(), name.as_bytes()) {
            return true;
        }
        i += 1;
    }
    false
}

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A crash point: `crash_point!(LIST, "name")`. `LIST` is the `const` array
/// of the module's point names and must contain `"name"` (checked when
/// compiling). With the `crash-points` feature of `shm`, the process dies or
/// stops here when this point is armed; without it, nothing happens.
#[cfg(feature = "crash-points")]
#[macro_export]
macro_rules! crash_point {
    ($list:expr, $name:literal) => {{
        const _: () = assert!(
            $crate::crash::listed($list, $name),
            concat!("crash point \"", $name, "\" is missing from its list")
        );
        $crate::crash::hit($name);
    }};
}

/// A crash point: `crash_point!(LIST, "name")`. `LIST` is the `const` array
/// of the module's point names and must contain `"name"` (checked when
/// compiling). With the `crash-points` feature of `shm`, the process dies or
/// stops here when this point is armed; without it, nothing happens.
#[cfg(not(feature = "crash-points"))]
#[macro_export]
macro_rules! crash_point {
    ($list:expr, $name:literal) => {{
        const _: () = assert!(
            $crate::crash::listed($list, $name),
            concat!("crash point \"", $name, "\" is missing from its list")
        );
    }};
}

#[cfg(feature = "crash-points")]
pub use armed::{arm, disarm, hit, Action, ACTION_ENV, POINT_ENV};

#[cfg(feature = "crash-points")]
#[allow(unsafe_code)] // reads back the `&'static str` that `arm` keeps as two atomics
mod armed {
    use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

    /// The environment variable naming the point to arm.
    pub const POINT_ENV: &str = "PROCSYNC_CRASH_POINT";
    /// The environment variable choosing the [`Action`]: `kill` or `stop`.
    pub const ACTION_ENV: &str = "PROCSYNC_CRASH_ACTION";

    /// What an armed point does to the process that reaches it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Action {
        /// SIGKILL: the process dies right there.
        Kill,
        /// SIGSTOP: the process stops right there until sent SIGCONT; then
        /// the point disarms itself and the process goes on.
        Stop,
    }

    /// The environment has not been read yet.
    const UNREAD: u8 = 0;
    /// Nothing is armed: points return at once.
    const NONE: u8 = 1;
    /// A point is armed.
    const ARMED: u8 = 2;

    static STATE: AtomicU8 = AtomicU8::new(UNREAD);
    static NAME_PTR: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
    static NAME_LEN: AtomicUsize = AtomicUsize::new(0);
    static ACTION: AtomicU8 = AtomicU8::new(0);

    /// Arms `point` in this process (replacing any armed point): the next
    /// time this process reaches it, `action` happens. Per process: a
    /// forked child arms its own copy. Not meant for several threads
    /// arming at once.
    pub fn arm(point: &'static str, action: Action) {
        STATE.store(NONE, Ordering::SeqCst);
        NAME_LEN.store(point.len(), Ordering::SeqCst);
        NAME_PTR.store(point.as_ptr().cast_mut(), Ordering::SeqCst);
        ACTION.store(action as u8, Ordering::SeqCst);
        STATE.store(ARMED, Ordering::SeqCst);
    }

    /// Disarms whatever point is armed in this process (the environment is
    /// not read again).
    pub fn disarm() {
        STATE.store(NONE, Ordering::SeqCst);
    }

    /// The body of [`crash_point!`](crate::crash_point): acts if `name` is
    /// the armed point.
    #[inline]
    pub fn hit(name: &'static str) {
        if STATE.load(Ordering::Relaxed) != NONE {
            hit_slow(name);
        }
    }

    #[cold]
    fn hit_slow(name: &'static str) {
        if STATE.load(Ordering::SeqCst) == UNREAD {
            read_environment();
        }
        if STATE.load(Ordering::SeqCst) != ARMED {
            return;
        }
        let ptr = NAME_PTR.load(Ordering::SeqCst);
        let len = NAME_LEN.load(Ordering::SeqCst);
        // SAFETY: `arm` stores the pointer and length of a `&'static str`
        // (the environment's is leaked), so they stay valid for ever.
        let armed = unsafe { std::slice::from_raw_parts(ptr, len) };
        if armed != name.as_bytes() {
            return;
        }
        if ACTION.load(Ordering::SeqCst) == Action::Stop as u8 {
            disarm();
            crate::sys::stop_self();
        } else {
            crate::sys::kill_self();
        }
    }

    fn read_environment() {
        let Ok(point) = std::env::var(POINT_ENV) else {
            STATE.store(NONE, Ordering::SeqCst);
            return;
        };
        let action = match std::env::var(ACTION_ENV).as_deref() {
            Ok("stop") => Action::Stop,
            _ => Action::Kill,
        };
        arm(Box::leak(point.into_boxed_str()), action);
    }
}
