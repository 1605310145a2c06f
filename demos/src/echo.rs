//! The seed's socket server: a process per accepted connection, each
//! printing what it receives and replying `hi`; and a client that checks
//! every reply.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use daemon::{Child, JoinError, Process};
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

/// Accepts connections, a child process each; returns (connections,
/// messages answered) once `max` connections were served.
fn serve(ctx: &Context, listener: &TcpListener, max: Option<u32>) -> Result<(u32, u32), DemoError> {
    let mut handlers: Vec<Child<u32>> = Vec::new();
    let mut connections = 0;
    let mut answered = 0;
    while max.is_none_or(|m| connections < m) {
        let (conn, _peer) = listener.accept()?;
        connections += 1;
        // Process(target=fun, args=(conn,)).start(): the child gets the
        // connection; the parent's copy is closed when `conn` drops here.
        handlers.push(
            Process::new(|| serve_connection(ctx, conn))
                .name("echo-conn")
                .start()?,
        );
        // Collect the handlers that have finished, so none is left a zombie.
        let mut i = 0;
        while i < handlers.len() {
            if handlers[i].is_alive() {
                i += 1;
            } else {
                answered += counted(ctx, handlers.swap_remove(i).join());
            }
        }
    }
    for h in handlers {
        answered += counted(ctx, h.join());
    }
    Ok((connections, answered))
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
    let (connections, answered) = serve(ctx, &listener, args.max_connections)?;
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
    let answered = Shared::new(AtomicU32::new(0))?;
    let server = Process::new(|| -> Result<(), String> {
        let (_, n) = serve(ctx, &listener, Some(CLIENTS)).map_err(|e| e.to_string())?;
        answered.store(n, Ordering::SeqCst);
        Ok(())
    })
    .name("echo-server")
    .start()?;
    drop(listener);
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
