//! The seed's socket server: a process per accepted connection, each
//! printing what it receives and replying `hi`; and a client that checks
//! every reply.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use daemon::{Child, JoinError, Process};
use rustix::event::{poll, PollFd, PollFlags};
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
/// client closes. Returns how many messages it answered.
fn serve_connection(ctx: &Context, mut conn: TcpStream) -> u32 {
    let mut buf = [0u8; 1024];
    let mut answered = 0;
    loop {
        match conn.read(&mut buf) {
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
/// The listening socket is in an `Option` so that each handler can close
/// its own copy of it (see [`start_handler`]); it stays `Some` here.
fn serve(
    ctx: &Context,
    listening: &mut Option<TcpListener>,
    max: Option<u32>,
) -> Result<(u32, u32), DemoError> {
    let mut handlers: Vec<Child<u32>> = Vec::new();
    let mut connections = 0;
    let mut answered = 0;
    loop {
        let accepting = max.is_none_or(|m| connections < m);
        if !accepting && handlers.is_empty() {
            return Ok((connections, answered));
        }
        let woken = wait(listening, accepting, &handlers)?;
        // Collect the handlers that have ended as soon as they end: none is
        // left a zombie until the next client, and their descriptors close.
        for &i in woken.ended.iter().rev() {
            answered += counted(ctx, handlers.swap_remove(i).join());
        }
        if woken.connection {
            let (conn, _peer) = listener(listening).accept()?;
            connections += 1;
            handlers.push(start_handler(ctx, listening, conn)?);
        }
    }
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
fn wait(
    listening: &Option<TcpListener>,
    accepting: bool,
    handlers: &[Child<u32>],
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
    match poll(&mut fds, None) {
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
) -> Result<Child<u32>, daemon::Error> {
    let mut accepted = Some(conn);
    let started = Process::new(|| {
        // In the handler: its copies, taken from its own memory.
        drop(listening.take());
        accepted
            .take()
            .map_or(0, |conn| serve_connection(ctx, conn))
    })
    .daemon(true)
    .name("echo-conn")
    .start();
    // The server's copy of the connection. (Moved into the closure, it
    // would never be closed: a started closure is never dropped here.)
    drop(accepted);
    started
}

/// The messages a finished handler answered; a handler that gave no count
/// (killed, panicked) is logged and counts 0. One client's handler dying
/// never stops the server.
fn counted(ctx: &Context, ended: Result<u32, JoinError>) -> u32 {
    match ended {
        Ok(answered) => answered,
        Err(JoinError::Signaled { pid, signal }) => {
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
    ctx.say(
        format!("listening on {addr}"),
        format!("listening on {addr}"),
    );
    let (connections, answered) = serve(ctx, &mut Some(listener), args.max_connections)?;
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
        let (_, n) = serve(ctx, &mut listening, Some(CLIENTS)).map_err(|e| e.to_string())?;
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
