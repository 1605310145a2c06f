//! Runs the `demos` binary and reads its summary line.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A finished demo run.
pub(crate) struct Run {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) code: Option<i32>,
}

impl Run {
    /// The last `summary:` line as key -> value.
    pub(crate) fn summary(&self) -> HashMap<String, String> {
        let line = self
            .stdout
            .lines()
            .rev()
            .find(|l| l.starts_with("summary: "))
            .unwrap_or_else(|| panic!("no summary line in:\n{}\n{}", self.stdout, self.stderr));
        line["summary: ".len()..]
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// One summary value parsed, panicking with the output if missing.
    pub(crate) fn value<T: std::str::FromStr>(&self, key: &str) -> T {
        let summary = self.summary();
        let raw = summary
            .get(key)
            .unwrap_or_else(|| panic!("summary has no {key}: {summary:?}"));
        raw.parse()
            .unwrap_or_else(|_| panic!("summary {key}={raw} does not parse"))
    }
}

/// Runs `demos ARGS`, killing it (and failing) after `timeout`.
pub(crate) fn demos(args: &[&str], timeout: Duration) -> Run {
    demos_with_env(args, &[], timeout)
}

/// [`demos`] with these environment variables set.
pub(crate) fn demos_with_env(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_demos"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start demos");
    // `None`: no limit (a timeout past the end of the clock).
    let limit = Instant::now().checked_add(timeout);
    while child.try_wait().expect("poll demos").is_none() {
        if limit.is_some_and(|l| Instant::now() >= l) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect demos");
            panic!(
                "demos {args:?} ran longer than {timeout:?}:\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("collect demos");
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}
