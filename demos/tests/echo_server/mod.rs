//! A `demos echo-server` under test and its clients, shared by the echo
//! test binaries (each uses a part of it).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
use testkit::GENEROUS;

/// A `demos echo-server` process under test: its port, its stdout lines
/// (read by a thread, so a test waits for a line with a timeout), and the
/// handlers to clean up if they outlive it.
pub(crate) struct Server {
    pub(crate) process: std::process::Child,
    pub(crate) port: u16,
    /// Its first line, which names the address it listens on.
    pub(crate) listening_line: String,
    lines: mpsc::Receiver<String>,
    /// Handlers seen (as pidfds, so a cleanup never signals a reused pid).
    handlers: Vec<OwnedFd>,
}

impl Server {
    /// Starts `demos echo-server --port 0 ARGS`, under `ulimit -n NOFILE`
    /// when given, and waits for its `listening on` line.
    pub(crate) fn start(args: &[&str], nofile: Option<u32>) -> Server {
        let demos = env!("CARGO_BIN_EXE_demos");
        let mut command = match nofile {
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("ulimit -n {n} && exec \"$0\" \"$@\""), demos]);
                sh
            }
            None => Command::new(demos),
        };
        let mut process = command
            .args(["echo-server", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = process.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(GENEROUS).expect("the listening line");
        let port = first.rsplit(':').next().unwrap().trim().parse().unwrap();
        Server {
            process,
            port,
            listening_line: first,
            lines,
            handlers: Vec::new(),
        }
    }

    pub(crate) fn pid(&self) -> Pid {
        Pid::from_raw(self.process.id() as i32).unwrap()
    }

    /// The server's children (running handlers and unreaped zombies alike).
    pub(crate) fn children(&self) -> Vec<Pid> {
        let pid = self.process.id();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| Pid::from_raw(p.parse().ok()?))
            .collect()
    }

    /// The server's only child, remembered for the cleanup.
    pub(crate) fn only_handler(&mut self) -> (Pid, BorrowedFd<'_>) {
        let children = self.children();
        assert_eq!(children.len(), 1, "one handler expected: {children:?}");
        let pidfd = pidfd_open(children[0], PidfdFlags::empty()).unwrap();
        self.handlers.push(pidfd);
        (children[0], self.handlers.last().unwrap().as_fd())
    }

    /// How many descriptors the server has open.
    pub(crate) fn descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.process.id()))
            .unwrap()
            .count()
    }

    /// Waits for a line containing `text`, and returns it.
    pub(crate) fn wait_for_line(&self, text: &str) -> String {
        let limit = testkit::deadline(GENEROUS);
        let mut seen = Vec::new();
        loop {
            let left = limit.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(e) => panic!("no line with {text:?} ({e}) after {seen:?}"),
            }
        }
    }

    /// Waits (at most [`GENEROUS`]) for the server to exit; its remaining
    /// stdout lines.
    pub(crate) fn finish(mut self) -> (std::process::ExitStatus, Vec<String>) {
        testkit::wait_until("the server exits", || {
            self.process.try_wait().unwrap().is_some()
        });
        let status = self.process.wait().unwrap();
        // Every line up to the end of its output.
        let mut rest = Vec::new();
        loop {
            match self.lines.recv_timeout(GENEROUS) {
                Ok(line) => rest.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return (status, rest),
                Err(e) => panic!("the server's output never ended ({e}) after {rest:?}"),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        for pidfd in &self.handlers {
            let _ = pidfd_send_signal(pidfd, Signal::KILL);
        }
    }
}

/// A client connection that has sent `hello` and read `hi`.
pub(crate) fn answered_client(port: u16) -> TcpStream {
    let mut conn = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    conn.set_read_timeout(Some(GENEROUS)).unwrap();
    conn.write_all(b"hello").unwrap();
    let mut reply = [0u8; 2];
    conn.read_exact(&mut reply)
        .unwrap_or_else(|e| panic!("no reply from port {port}: {e}"));
    assert_eq!(&reply, b"hi");
    conn
}

/// Whether the server closed `conn` (EOF or reset) within [`GENEROUS`].
pub(crate) fn closed_by_server(conn: &mut TcpStream) -> bool {
    conn.set_read_timeout(Some(GENEROUS)).unwrap();
    let mut byte = [0u8; 1];
    match conn.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}
