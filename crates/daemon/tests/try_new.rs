//! `Process::try_new`: a child closure that uses `?`; its `Err` comes back
//! as `JoinError::Failed` with the error's message and causes, each in a
//! real child process.

use std::error::Error;
use std::fmt;
use std::io;
use std::ops::Deref;

use daemon::{JoinError, Process, FAILED_EXIT_CODE};
use testkit::GENEROUS;

/// An error with a source, which has a source of its own.
#[derive(Debug)]
struct ConfigError {
    source: LineError,
}

#[derive(Debug)]
struct LineError {
    line: u32,
    source: std::num::ParseIntError,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bad config file")
    }
}

impl Error for ConfigError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} is not a number", self.line)
    }
}

impl Error for LineError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

fn read_config(text: &str) -> Result<u32, ConfigError> {
    text.parse().map_err(|source| ConfigError {
        source: LineError { line: 3, source },
    })
}

/// The fields of a `JoinError::Failed`, or a panic.
fn failed(error: JoinError) -> (String, Vec<String>, String) {
    let text = error.to_string();
    match error {
        JoinError::Failed {
            message, causes, ..
        } => (message, causes, text),
        other => panic!("not Failed: {other:?}"),
    }
}

#[test]
fn an_io_error_comes_back_with_its_source_chain_and_exit_code_1() {
    let mut child = Process::try_new(|| -> io::Result<u32> {
        let value =
            read_config("12x").map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(value)
    })
    .name("config-reader")
    .start()
    .unwrap();
    let pid = child.pid();
    let (message, causes, text) = failed(child.join_timeout(GENEROUS).unwrap_err());
    // An io::Error shows its inner error, whose sources are its own.
    assert_eq!(message, "bad config file");
    assert_eq!(
        causes,
        ["line 3 is not a number", "invalid digit found in string"]
    );
    assert_eq!(
        text,
        format!(
            "process \"config-reader\" (pid {pid}) failed: bad config file: \
             line 3 is not a number: invalid digit found in string"
        )
    );
    assert_eq!(child.exit_code(), Some(FAILED_EXIT_CODE));
}

#[test]
fn a_boxed_error_from_question_mark_on_a_parse_error_comes_back() {
    let child = Process::try_new(|| -> Result<u32, Box<dyn Error>> {
        let n: u32 = "forty-two".parse()?;
        Ok(n)
    })
    .start()
    .unwrap();
    let (message, causes, _) = failed(child.join().unwrap_err());
    assert_eq!(message, "invalid digit found in string");
    assert!(causes.is_empty());

    // The chain of a boxed error is its own.
    let child =
        Process::try_new(|| -> Result<u32, Box<dyn Error + Send + Sync>> { Ok(read_config("x")?) })
            .start()
            .unwrap();
    let (message, causes, _) = failed(child.join().unwrap_err());
    assert_eq!(message, "bad config file");
    assert_eq!(causes.len(), 2);
}

#[test]
fn a_string_error_comes_back_as_its_message() {
    let child = Process::try_new(|| -> Result<(), String> { Err("sold out".to_string()) })
        .start()
        .unwrap();
    let pid = child.pid();
    let name = child.name().to_string();
    let (message, causes, text) = failed(child.join().unwrap_err());
    assert_eq!(message, "sold out");
    assert!(causes.is_empty());
    assert_eq!(
        text,
        format!("process \"{name}\" (pid {pid}) failed: sold out")
    );

    let child = Process::try_new(|| -> Result<(), &str> { Err("no seats") })
        .start()
        .unwrap();
    assert_eq!(failed(child.join().unwrap_err()).0, "no seats");
}

/// Like `anyhow::Error`: only `Display` and `Debug`, and a deref to
/// `dyn Error + Send + Sync`.
#[derive(Debug)]
struct Report(Box<dyn Error + Send + Sync>);

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Deref for Report {
    type Target = dyn Error + Send + Sync;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

#[test]
fn an_anyhow_like_error_comes_back_with_its_chain() {
    let child = Process::try_new(|| -> Result<u8, Report> {
        read_config("?").map_err(|e| Report(Box::new(e)))?;
        Ok(1)
    })
    .start()
    .unwrap();
    let (message, causes, _) = failed(child.join().unwrap_err());
    assert_eq!(message, "bad config file");
    assert_eq!(
        causes,
        ["line 3 is not a number", "invalid digit found in string"]
    );
}

#[test]
fn an_ok_value_comes_back_as_the_value() {
    let words = ["process", "isolation"];
    let child = Process::try_new(|| -> Result<Vec<String>, Box<dyn Error>> {
        let n: usize = "2".parse()?;
        Ok(words[..n].iter().map(|w| w.to_uppercase()).collect())
    })
    .daemon(true)
    .start()
    .unwrap();
    assert!(child.is_daemon());
    assert_eq!(child.join().unwrap(), ["PROCESS", "ISOLATION"]);

    let mut child = Process::try_new(|| -> io::Result<u8> { Ok(7) })
        .start()
        .unwrap();
    assert_eq!(child.join_timeout(GENEROUS).unwrap(), 7);
    assert_eq!(child.exit_code(), Some(0));
}

#[test]
fn a_panic_in_a_try_new_closure_is_still_a_panic() {
    let child = Process::try_new(|| -> Result<u8, String> { panic!("no tickets left") })
        .start()
        .unwrap();
    assert!(matches!(
        child.join(),
        Err(JoinError::Panicked { message, .. }) if message == "no tickets left"
    ));
}

/// An error whose `Display` panics is the child's panic.
#[derive(Debug)]
struct Unprintable;

impl fmt::Display for Unprintable {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        panic!("cannot print this error")
    }
}

impl Error for Unprintable {}

#[test]
fn an_error_whose_display_panics_is_the_childs_panic() {
    let child = Process::try_new(|| -> Result<u8, Unprintable> { Err(Unprintable) })
        .start()
        .unwrap();
    assert!(matches!(
        child.join(),
        Err(JoinError::Panicked { message, .. }) if message == "cannot print this error"
    ));
}

/// Messages larger than the socket buffer (streamed while the child
/// writes) arrive whole.
#[test]
fn a_long_error_message_arrives_whole() {
    let long = "x".repeat(300_000);
    let child = Process::try_new(|| -> Result<(), Box<dyn Error>> {
        Err(Box::new(io::Error::other(long.clone())))
    })
    .start()
    .unwrap();
    assert_eq!(failed(child.join().unwrap_err()).0, long);
}
