//! The lesson's socket server: a process per connection, each printing what
//! it receives and replying `hi`. To end by itself, this one serves a few
//! clients (processes too) that check every reply.
//!
//! `cargo run -p procsync-daemon --example echo_server`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use daemon::Process;

const CLIENTS: usize = 3;
const MESSAGES: usize = 3;

// def fun(conn): while 1: ret = conn.recv(1024); print(ret); conn.send(b"hi")
fn fun(mut conn: &TcpStream) -> usize {
    let mut buf = [0u8; 1024];
    let mut answered = 0;
    // Until the client closes (Python's ConnectionAbortedError).
    while let Ok(n @ 1..) = conn.read(&mut buf) {
        println!("b'{}'", buf[..n].escape_ascii());
        conn.write_all(b"hi").expect("send");
        answered += 1;
    }
    answered
}

/// A client: sends its messages one at a time and checks each reply.
fn client(addr: SocketAddr, id: usize) {
    let mut conn = TcpStream::connect(addr).expect("connect");
    for k in 0..MESSAGES {
        conn.write_all(format!("hello {id}.{k}").as_bytes())
            .expect("send");
        let mut reply = [0u8; 2];
        conn.read_exact(&mut reply).expect("reply");
        assert_eq!(&reply, b"hi");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // sk = socket.socket(); sk.bind(("127.0.0.1", 9000)); sk.listen()
    // (port 0: a free port, so that the example never finds its own taken)
    let sk = TcpListener::bind("127.0.0.1:0")?;
    let addr = sk.local_addr()?;
    let clients = (0..CLIENTS)
        .map(|id| Process::new(move || client(addr, id)).start())
        .collect::<Result<Vec<_>, _>>()?;
    let mut handlers = Vec::new();
    for _ in 0..CLIENTS {
        // conn, addr = sk.accept(); Process(target=fun, args=(conn,)).start()
        let (conn, _) = sk.accept()?;
        handlers.push(Process::new(|| fun(&conn)).start()?);
        // The child has its own copy of conn; this one is closed here.
        drop(conn);
    }
    for client in clients {
        client.join()?;
    }
    for handler in handlers {
        assert_eq!(handler.join()?, MESSAGES);
    }
    Ok(())
}
