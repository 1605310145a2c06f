//! `demos echo-server` and `echo-client`: a process per connection, every
//! reply checked.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::demos;

#[test]
fn twenty_concurrent_clients_get_every_reply() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_demos"))
        .args(["echo-server", "--port", "0", "--max-connections", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let port = first.rsplit(':').next().unwrap().trim().to_string();
    assert!(port.parse::<u16>().is_ok_and(|p| p != 0), "{first}");

    let run = demos(
        &[
            "echo-client",
            "--port",
            &port,
            "--clients",
            "20",
            "--messages",
            "5",
        ],
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.value::<u32>("clients"), 20);
    assert_eq!(run.value::<u32>("replies"), 100);

    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(server.wait().unwrap().success());
    let summary = rest
        .iter()
        .rev()
        .find(|l| l.starts_with("summary:"))
        .expect("server summary");
    assert_eq!(summary, "summary: connections=20 replies=100");
    assert_eq!(
        rest.iter().filter(|l| l.starts_with("b'hello")).count(),
        100
    );
}

#[test]
fn a_client_without_a_server_fails_clearly() {
    // Port 1 on loopback: nothing listens there.
    let run = demos(
        &["echo-client", "--port", "1", "--clients", "1"],
        Duration::from_secs(30),
    );
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("connect"), "{}", run.stderr);
}
