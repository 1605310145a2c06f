//! The seed's socket server: a process per accepted connection, each
//! printing what it receives and replying `hi`; and a client that checks
//! every reply.
//!
//! Unlike the seed's, the server survives its clients and its handlers: at
//! most `--max-clients` handlers at once (fewer under a low `ulimit -n`),
//! idle connections closed after `--idle-timeout`, `accept` retried when
//! descriptors run out, a handler's death logged and never fatal, and no
//! handler outliving the server or keeping its port.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use daemon::{Child, JoinError, Process};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use shm::Shared;

use crate::context::{Context, DemoError, Summary};

/// The seed's reply.
const REPLY: &[u8] = b"hi";

/// Arguments of `demos echo-server`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServerArgs {
    /// Port on 127.0.0.1 (the seed's 9000); 0 picks a free one and prints it.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Stop after serving this many connections (default: serve until
    /// interrupted).
    #[arg(long)]
    max_connections: Option<u32>,
    /// Serve at most this many clients at once (a process each); the next
    /// ones wait to be accepted until a handler ends. Lowered at start to
    /// what the descriptor limit (`ulimit -n`) allows: each running handler
    /// keeps 3 descriptors in the server.
    #[arg(long, default_value_t = Limits::DEFAULT.max_clients,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_clients: u32,
    /// Close a connection after this many seconds without a message from
    /// its client (or without room to send a reply), so that idle clients
    /// cannot keep every handler busy; and while every handler is busy and
    /// a client waits, close the connection held longest once it was held
    /// this long (0.001 to 86,400). Not scaled by --speed.
    #[arg(long, default_value = "60", value_parser = parse_idle_timeout)]
    idle_timeout: Duration,
}

/// How much of the machine the server may hold.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Handlers running at once (see [`clients_at_once`]).
    max_clients: u32,
    /// How long a handler waits for a message (or to send a reply).
    idle_timeout: Duration,
}

impl Limits {
    /// `echo-server`'s defaults, and those of the echo scenario in `all`.
    const DEFAULT: Limits = Limits {
        max_clients: 256,
        idle_timeout: Duration::from_secs(60),
    };
}

/// The longest `--idle-timeout`: a day, in seconds.
const MAX_IDLE_SECS: f64 = 86_400.0;
/// The shortest `--idle-timeout`: a millisecond. Below it a timeout rounds
/// to nothing (1e-300 s became a zero `Duration`, which a socket refuses as
/// a timeout: every client was closed unanswered), and no client could
/// answer in time anyway.
const MIN_IDLE_SECS: f64 = 0.001;

fn parse_idle_timeout(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds (try 60 or 0.5)"))?;
    if !(MIN_IDLE_SECS..=MAX_IDLE_SECS).contains(&secs) {
        return Err(format!(
            "the idle timeout must be {MIN_IDLE_SECS} to {MAX_IDLE_SECS} seconds, not {text}"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Arguments of `demos echo-client`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClientArgs {
    /// The server's port on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// How many client processes connect at once.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    clients: u32,
    /// Messages each client sends (each must be answered `hi`).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    messages: u32,
}

/// The seed's `fun(conn)`: print what arrives, answer `hi`, until the
/// client closes or stays idle for `idle` (nothing sent, or no room for a
/// reply). Returns how many messages it answered.
fn serve_connection(ctx: &Context, mut conn: TcpStream, idle: Duration) -> u32 {
    let mut buf = [0u8; 1024];
    let mut answered = 0;
    if conn.set_read_timeout(Some(idle)).is_err() || conn.set_write_timeout(Some(idle)).is_err() {
        return answered;
    }
    loop {
        match conn.read(&mut buf) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                let secs = idle.as_secs_f64();
                ctx.say(
                    format!("连接空闲 {secs} 秒, 已关闭"),
                    format!("idle for {secs} s: connection closed"),
                );
                break;
            }
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let text = buf[..n].escape_ascii().to_string();
                ctx.say(format!("b'{text}'"), format!("b'{text}'"));
                if conn.write_all(REPLY).is_err() {
                    break;
                }
                answered += 1;
            }
        }
    }
    answered
}

/// Accepts connections, a handler process each, until `max` connections
/// were accepted and every handler has ended; returns (connections,
/// messages answered).
///
/// At most `limits.max_clients` handlers run at once (see
/// [`clients_at_once`]); the next clients wait in the listen
/// backlog. While every handler is busy and a client waits, the connection
/// held longest is closed (its handler killed) once it has been held for
/// `limits.idle_timeout`: clients that trickle a byte now and then are not
/// idle, and could otherwise keep every handler for ever (slowloris).
/// Out of descriptors or processes (`accept` or a handler's start
/// fails with EMFILE, EAGAIN, ...), the server waits until a handler ends,
/// or [`RETRY_AFTER`], and tries again; a connection already accepted is
/// kept for that retry.
///
/// The listening socket is in an `Option` so that each handler can close
/// its own copy of it (see [`start_handler`]); it stays `Some` here.
fn serve(
    ctx: &Context,
    listening: &mut Option<TcpListener>,
    limits: Limits,
    max: Option<u32>,
) -> Result<(u32, u32), DemoError> {
    // Readiness comes from `poll`; a connection gone before `accept`
    // must not block the server.
    listener(listening).set_nonblocking(true)?;
    let mut handlers: Vec<Child<u32>> = Vec::new();
    // Per handler, as `handlers`: when it started, and whether it was
    // killed to make room (and is only waiting to be collected).
    let mut held: Vec<(Instant, bool)> = Vec::new();
    let mut connections = 0;
    let mut answered = 0;
    // Accepted, its handler not started yet (no resources for it).
    let mut pending: Option<TcpStream> = None;
    // Out of resources: when to try again if no handler ends before.
    let mut retry_at: Option<Instant> = None;
    // Out of resources since the last handler started (said once).
    let mut short = false;
    loop {
        let accepting = max.is_none_or(|m| connections < m);
        if !accepting && handlers.is_empty() && pending.is_none() {
            return Ok((connections, answered));
        }
        let room = handlers.len() < limits.max_clients as usize && retry_at.is_none();
        // Every handler busy (none killed yet): the one held longest may
        // be closed for a waiting client once it was held `idle_timeout`.
        let busy = held.iter().filter(|(_, killed)| !killed).count();
        let evict_at = (accepting && pending.is_none() && retry_at.is_none())
            .then_some(())
            .filter(|()| busy >= limits.max_clients as usize)
            .and_then(|()| held.iter().map(|(since, _)| *since).min())
            .map(|oldest| oldest + limits.idle_timeout);
        let evicting = evict_at.is_some_and(|t| Instant::now() >= t);
        // Until then, not even a waiting client wakes the server.
        let until = match (retry_at, evict_at.filter(|_| !evicting)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let woken = wait(
            listening,
            accepting && pending.is_none() && (room || evicting),
            &handlers,
            until,
        )?;
        // Collect the handlers that have ended as soon as they end: none is
        // left a zombie until the next client, and their descriptors close.
        for &i in woken.ended.iter().rev() {
            held.swap_remove(i);
            answered += counted(ctx, handlers.swap_remove(i).join());
        }
        if woken.connection && evicting && handlers.len() >= limits.max_clients as usize {
            // A client waits and every handler is busy: close the
            // connection held longest (collected once its handler ends).
            if let Some((i, (since, killed))) = held
                .iter_mut()
                .enumerate()
                .filter(|(_, (_, killed))| !*killed)
                .min_by_key(|(_, (since, _))| *since)
            {
                let secs = since.elapsed().as_secs_f64();
                *killed = true;
                let _ = handlers[i].kill();
                ctx.say(
                    format!("所有连接处理进程都在忙, 有客户端在等: 关闭占用最久的连接 ({secs:.1} 秒)"),
                    format!(
                        "every handler busy and a client waits: closing the connection held longest ({secs:.1} s)"
                    ),
                );
            }
            continue;
        }
        if !woken.ended.is_empty() || retry_at.is_some_and(|t| Instant::now() >= t) {
            retry_at = None;
        }
        if woken.connection {
            match listener(listening).accept() {
                Ok((conn, _peer)) => {
                    connections += 1;
                    pending = Some(conn);
                }
                Err(e) if out_of_resources(&e) => {
                    retry_at = Some(short_of(ctx, &mut short, "accept", &e));
                }
                // The client left before it was accepted, or a signal.
                Err(e) if transient(&e) => {}
                Err(e) => return Err(format!("accept: {e}").into()),
            }
        }
        if retry_at.is_none() && handlers.len() < limits.max_clients as usize {
            if let Some(conn) = pending.take() {
                match start_handler(ctx, listening, conn, limits.idle_timeout) {
                    Ok(handler) => {
                        handlers.push(handler);
                        held.push((Instant::now(), false));
                        short = false;
                    }
                    Err(NotStarted::Retry(conn, e)) => {
                        pending = Some(conn);
                        retry_at = Some(short_of(ctx, &mut short, "starting a handler", &e));
                    }
                    Err(NotStarted::Untracked(e)) => ctx.say(
                        format!("连接处理进程已启动但无法跟踪: {e}"),
                        format!("a handler started but cannot be watched: {e}"),
                    ),
                }
            }
        }
    }
}

/// How long the server waits, out of descriptors or processes, before it
/// tries again when no handler ends first.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Descriptors the server keeps per running handler: the handler's pidfd,
/// its result socket and its streaming eventfd (`daemon::Child`).
const DESCRIPTORS_PER_HANDLER: u64 = 3;
/// Descriptors needed beyond those while a handler starts: the accepted
/// connection, and the socket pair's second end until the fork.
const DESCRIPTORS_TO_START: u64 = 2;

/// `max_clients`, lowered if the descriptor limit cannot hold that many
/// handlers; and the limit, if it lowered it.
///
/// Counts the open descriptors through `/proc/self/fd`, opening one for a
/// moment: called before the server says it listens, so that nobody sees
/// that one among the server's descriptors.
fn clients_at_once(max_clients: u32) -> (u32, Option<u64>) {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let Some(limit) = limit else {
        return (max_clients, None);
    };
    // What is open now (the directory's own descriptor not counted).
    let open = std::fs::read_dir("/proc/self/fd")
        .map_or(0, |entries| entries.count() as u64)
        .saturating_sub(1);
    let room = limit.saturating_sub(open + DESCRIPTORS_TO_START) / DESCRIPTORS_PER_HANDLER;
    let at_once = u32::try_from(room)
        .unwrap_or(u32::MAX)
        .clamp(1, max_clients);
    (at_once, (at_once < max_clients).then_some(limit))
}

/// Whether `accept` failed for want of descriptors or memory: worth a
/// retry once a handler ends.
fn out_of_resources(e: &std::io::Error) -> bool {
    [Errno::MFILE, Errno::NFILE, Errno::NOBUFS, Errno::NOMEM]
        .iter()
        .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()))
}

/// Whether `accept` failed for this one connection or this one call only
/// (accept(2): the connection was aborted, a network error is pending on
/// it, a signal, nothing to accept after all).
fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::Interrupted | ErrorKind::ConnectionAborted
    ) || [
        Errno::PROTO,
        Errno::PERM,
        Errno::NETDOWN,
        Errno::NOPROTOOPT,
        Errno::HOSTDOWN,
        Errno::NONET,
        Errno::HOSTUNREACH,
        Errno::OPNOTSUPP,
        Errno::NETUNREACH,
    ]
    .iter()
    .any(|errno| e.raw_os_error() == Some(errno.raw_os_error()))
}

/// Says what ran short (once until a handler starts again: `short`);
/// when to try again.
fn short_of(ctx: &Context, short: &mut bool, what: &str, e: &dyn std::fmt::Display) -> Instant {
    if !std::mem::replace(short, true) {
        ctx.say(
            format!("资源不足 ({what}: {e}), 等待连接处理进程结束后重试"),
            format!("out of resources ({what}: {e}); trying again when a handler ends"),
        );
    }
    Instant::now() + RETRY_AFTER
}

/// The listening socket, which the server always has (handlers close
/// their copies).
fn listener(listening: &Option<TcpListener>) -> &TcpListener {
    listening
        .as_ref()
        .expect("the server keeps its listening socket")
}

/// What woke the server.
struct Woken {
    /// A connection waits to be accepted.
    connection: bool,
    /// The indices of the handlers that have ended, in increasing order.
    ended: Vec<usize>,
}

/// Waits until a connection arrives (if `accepting`) or a handler ends:
/// one `poll` on the listening socket and the handlers' sentinels.
///
/// Returns at `until` at the latest.
fn wait(
    listening: &Option<TcpListener>,
    accepting: bool,
    handlers: &[Child<u32>],
    until: Option<Instant>,
) -> Result<Woken, DemoError> {
    let listener = accepting.then(|| listener(listening));
    let mut fds: Vec<PollFd<'_>> = listener
        .iter()
        .map(|l| PollFd::new(*l, PollFlags::IN))
        .chain(
            handlers
                .iter()
                .map(|h| PollFd::from_borrowed_fd(h.sentinel(), PollFlags::IN)),
        )
        .collect();
    let timeout = until.map(|t| {
        let left = t.saturating_duration_since(Instant::now());
        Timespec {
            tv_sec: left.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: left.subsec_nanos().into(),
        }
    });
    match poll(&mut fds, timeout.as_ref()) {
        Ok(_) => {}
        Err(Errno::INTR) => {}
        Err(e) => return Err(format!("poll: {e}").into()),
    }
    let ready = |fd: &PollFd<'_>| !fd.revents().is_empty();
    let skip = usize::from(listener.is_some());
    Ok(Woken {
        connection: listener.is_some() && ready(&fds[0]),
        ended: fds[skip..]
            .iter()
            .enumerate()
            .filter(|(_, fd)| ready(fd))
            .map(|(i, _)| i)
            .collect(),
    })
}

/// Why a handler was not started.
enum NotStarted {
    /// No child: the connection is handed back for a later try.
    Retry(TcpStream, daemon::Error),
    /// The child runs and serves the connection, but its handle could not
    /// be made (`pidfd_open` failed after the fork).
    Untracked(daemon::Error),
}

/// Starts the process that serves `conn`.
///
/// The handler closes its copy of the listening socket (so a handler
/// never keeps the port, whatever becomes of the server) and is a daemon
/// child: the parent-death signal kills it with the server, even when the
/// server is SIGKILLed. The server closes its own copy of the connection.
fn start_handler(
    ctx: &Context,
    listening: &mut Option<TcpListener>,
    conn: TcpStream,
    idle: Duration,
) -> Result<Child<u32>, NotStarted> {
    let mut accepted = Some(conn);
    let started = Process::new(|| {
        // In the handler: its copies, taken from its own memory.
        drop(listening.take());
        accepted
            .take()
            .map_or(0, |conn| serve_connection(ctx, conn, idle))
    })
    .daemon(true)
    .name("echo-conn")
    .start();
    match started {
        // The server's copy of the connection is closed here (moved into
        // the closure, it would never be: a started closure is never
        // dropped in the parent).
        Ok(handler) => Ok(handler),
        Err(
            e @ daemon::Error::Os {
                op: "pidfd_open", ..
            },
        ) => Err(NotStarted::Untracked(e)),
        Err(e) => match accepted.take() {
            Some(conn) => Err(NotStarted::Retry(conn, e)),
            None => Err(NotStarted::Untracked(e)),
        },
    }
}

/// The messages a finished handler answered; a handler that gave no count
/// (killed, panicked) is logged and counts 0. One client's handler dying
/// never stops the server.
fn counted(ctx: &Context, ended: Result<u32, JoinError>) -> u32 {
    match ended {
        Ok(answered) => answered,
        Err(JoinError::Signaled { pid, signal, .. }) => {
            ctx.say(
                format!("连接处理进程 {pid} 被信号 {signal} 杀死, 服务器继续服务"),
                format!("handler {pid} was killed by signal {signal}; serving on"),
            );
            0
        }
        Err(other) => {
            ctx.say(
                format!("连接处理进程失败: {other}; 服务器继续服务"),
                format!("handler failed: {other}; serving on"),
            );
            0
        }
    }
}

pub(crate) fn run_server(ctx: &Context, args: &ServerArgs) -> Result<Summary, DemoError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, args.port))
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let addr = listener.local_addr()?;
    let (at_once, lowered_by) = clients_at_once(args.max_clients);
    // The address ends the line in both languages (tests read the port
    // after its last ':').
    ctx.say(
        format!("服务器正在监听 {addr}"),
        format!("listening on {addr}"),
    );
    if let Some(limit) = lowered_by {
        ctx.say(
            format!("最多同时服务 {at_once} 个客户端 (文件描述符上限 {limit})"),
            format!("serving at most {at_once} clients at once (descriptor limit {limit})"),
        );
    }
    let limits = Limits {
        max_clients: at_once,
        idle_timeout: args.idle_timeout,
    };
    let (connections, answered) = serve(ctx, &mut Some(listener), limits, args.max_connections)?;
    let summary = Summary::default()
        .with("connections", connections)
        .with("replies", answered);
    summary.print();
    Ok(summary)
}

/// One client: `messages` messages, each answered `hi`. Returns the number
/// of correct replies.
fn client(addr: SocketAddr, id: u32, messages: u32) -> Result<u32, String> {
    let mut conn =
        TcpStream::connect(addr).map_err(|e| format!("client {id}: connect {addr}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut good = 0;
    for m in 0..messages {
        conn.write_all(format!("hello {id}.{m}").as_bytes())
            .map_err(|e| format!("client {id}: send: {e}"))?;
        let mut reply = [0u8; 2];
        conn.read_exact(&mut reply)
            .map_err(|e| format!("client {id}: reply: {e}"))?;
        if reply == REPLY {
            good += 1;
        }
    }
    Ok(good)
}

fn run_clients(
    ctx: &Context,
    addr: SocketAddr,
    clients: u32,
    messages: u32,
) -> Result<Summary, DemoError> {
    let children = (0..clients)
        .map(|id| {
            Process::new(move || client(addr, id, messages))
                .name(format!("client-{id}"))
                .start()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut replies = 0;
    for child in children {
        replies += child.join()??;
    }
    ctx.say(
        format!("{clients} 个客户端, 每个发送 {messages} 条, 收到 {replies} 个 hi"),
        format!("{clients} clients x {messages} messages: {replies} replies of hi"),
    );
    let summary = Summary::default()
        .with("clients", clients)
        .with("replies", replies);
    summary.print();
    Ok(summary)
}

pub(crate) fn run_client(ctx: &Context, args: &ClientArgs) -> Result<Summary, DemoError> {
    run_clients(
        ctx,
        SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)),
        args.clients,
        args.messages,
    )
}

/// `demos all`: the server (a child that ends after serving every client)
/// and the clients, on a free loopback port.
pub(crate) fn run_both(ctx: &Context) -> Result<Summary, DemoError> {
    const CLIENTS: u32 = 20;
    const MESSAGES: u32 = 3;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    let mut listening = Some(listener);
    let answered = Shared::new(AtomicU32::new(0))?;
    let server = Process::new(|| -> Result<(), String> {
        let limits = Limits {
            max_clients: clients_at_once(Limits::DEFAULT.max_clients).0,
            ..Limits::DEFAULT
        };
        let (_, n) =
            serve(ctx, &mut listening, limits, Some(CLIENTS)).map_err(|e| e.to_string())?;
        answered.store(n, Ordering::SeqCst);
        Ok(())
    })
    .name("echo-server")
    .start()?;
    drop(listening);
    let summary = match run_clients(ctx, addr, CLIENTS, MESSAGES) {
        Ok(summary) => summary,
        Err(e) => {
            // The server would wait for the missing clients for ever.
            server.kill()?;
            return Err(e);
        }
    };
    server.join()??;
    let server_replies = answered.load(Ordering::SeqCst);
    ctx.say(
        format!("服务器: 每个连接一个进程, 共回复 {server_replies} 次"),
        format!("server: a process per connection, {server_replies} replies sent"),
    );
    Ok(summary)
}
