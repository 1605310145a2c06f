//! `demos echo-server` and `echo-client`: a process per connection, every
//! reply checked.

mod common;
mod echo_server;

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::demos;
use echo_server::{answered_client, closed_by_server, Server};
use rustix::process::{kill_process, prlimit, Resource, Rlimit, Signal};

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

#[test]
fn a_killed_handler_is_logged_and_the_server_serves_on() {
    let mut server = Server::start(&["--max-connections", "3"], None);
    let _first = answered_client(server.port);
    let (pid, _) = server.only_handler();
    kill_process(pid, Signal::KILL).unwrap();
    // The next two clients are served, and the server ends normally.
    drop(answered_client(server.port));
    drop(answered_client(server.port));
    let (status, rest) = server.finish();
    assert!(status.success(), "{status:?}: {rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains(&format!("handler {pid} was killed by signal 9"))),
        "{rest:?}"
    );
    assert_eq!(
        rest.last().unwrap(),
        "summary: connections=3 replies=2",
        "{rest:?}"
    );
}

#[test]
fn killing_the_server_ends_its_handlers_and_frees_its_port() {
    let mut server = Server::start(&[], None);
    let mut client = answered_client(server.port);
    server.only_handler();
    server.process.kill().unwrap();
    server.process.wait().unwrap();
    // The handler dies with the server: the client sees its connection end.
    assert!(
        closed_by_server(&mut client),
        "the handler outlived the server"
    );
    // And nobody holds the port: a new server can listen on it.
    let again = TcpListener::bind((Ipv4Addr::LOCALHOST, server.port));
    assert!(again.is_ok(), "port {} still held: {again:?}", server.port);
}

#[test]
fn finished_handlers_are_reaped_at_once_and_descriptors_do_not_grow() {
    let server = Server::start(&[], None);
    let before = server.descriptors();
    let clients: Vec<TcpStream> = (0..20).map(|_| answered_client(server.port)).collect();
    assert_eq!(server.children().len(), 20);
    drop(clients);
    // No new client connects: the server notices the handlers' ends itself.
    testkit::wait_until("every handler is reaped", || server.children().is_empty());
    testkit::wait_until("the descriptors are back to where they were", || {
        server.descriptors() == before
    });
}

#[test]
fn a_hundred_idle_clients_under_ulimit_64_leave_the_server_serving() {
    let mut server = Server::start(&[], Some(64));
    // It says how many handlers its descriptors allow, ...
    let line = server.wait_for_line("serving at most");
    let at_once: usize = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!((10..=20).contains(&at_once), "{line}");
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect((Ipv4Addr::LOCALHOST, server.port)).unwrap())
        .collect();
    // ... runs that many for idle clients, and no more: the others wait.
    testkit::wait_until("the server is full", || {
        server.children().len() == at_once || !matches!(server.process.try_wait(), Ok(None))
    });
    assert!(
        server.process.try_wait().unwrap().is_none(),
        "the server ended"
    );
    assert_eq!(server.children().len(), at_once);
    assert!(server.descriptors() <= 64);
    // Once the idle clients leave, a new one is served.
    drop(idle);
    drop(answered_client(server.port));
    assert!(
        server.process.try_wait().unwrap().is_none(),
        "the server ended"
    );
}

#[test]
fn out_of_descriptors_the_server_waits_and_accepts_again() {
    let server = Server::start(&[], None);
    // Now only a few descriptors are left for it: accept and the handlers'
    // start fail with EMFILE until a handler ends.
    let limit = (server.descriptors() + 5) as u64;
    prlimit(
        Some(server.pid()),
        Resource::Nofile,
        Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        },
    )
    .unwrap();
    let port = server.port;
    let clients: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || drop(answered_client(port))))
        .collect();
    for client in clients {
        client.join().expect("every client is answered");
    }
    let mut server = server;
    assert!(
        server.process.try_wait().unwrap().is_none(),
        "the server ended"
    );
}

#[test]
fn idle_clients_are_closed_so_waiting_clients_are_served() {
    let server = Server::start(&["--max-clients", "2", "--idle-timeout", "0.5"], None);
    let mut idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect((Ipv4Addr::LOCALHOST, server.port)).unwrap())
        .collect();
    // A third client waits for a free handler: the idle ones are closed.
    drop(answered_client(server.port));
    for conn in &mut idle {
        assert!(closed_by_server(conn), "an idle client was never closed");
    }
    server.wait_for_line("idle for");
}

#[test]
fn bad_limits_are_refused_with_the_reason() {
    for (option, value) in [
        ("--idle-timeout", "0"),
        ("--idle-timeout", "-1"),
        ("--idle-timeout", "inf"),
        ("--idle-timeout", "soon"),
        ("--max-clients", "0"),
    ] {
        let arg = format!("{option}={value}");
        let run = demos(
            &["echo-server", "--port", "0", &arg],
            Duration::from_secs(30),
        );
        assert_eq!(run.code, Some(2), "{option} {value}: {}", run.stderr);
        assert!(run.stderr.contains(option), "{}", run.stderr);
    }
}

/// `echo-server --lang zh` speaks Chinese like the other demos, from its
/// first line (issue 18: it said "listening on" in both languages); the
/// address still ends that line.
#[test]
fn echo_server_speaks_chinese_with_lang_zh() {
    let server = Server::start(&["--lang", "zh", "--max-connections", "1"], None);
    assert!(
        server
            .listening_line
            .starts_with("服务器正在监听 127.0.0.1:"),
        "{}",
        server.listening_line
    );
    drop(answered_client(server.port));
    let (status, rest) = server.finish();
    assert!(status.success());
    let has_chinese = |line: &str| line.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
    for line in &rest {
        // The client's bytes as the seed prints them, and the summary, are
        // the same in every language.
        assert!(
            line.starts_with("b'") || line.starts_with("summary: ") || has_chinese(line),
            "an English line under --lang zh: {line}"
        );
    }
}
