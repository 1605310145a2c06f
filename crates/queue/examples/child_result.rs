//! The lesson's §1 question, 父进程如何获取子进程的执行结果: the processes
//! share no memory, so the child sends its result back over a socket
//! (父子进程之间通过socket通信), here a Pipe.
//!
//! `cargo run -p procsync-queue --example child_result`

use daemon::Process;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // parent_conn, child_conn = Pipe()
    let (parent_conn, child_conn) = queue::pipe()?;
    // The child's work: the sum of the squares of 1..=100.
    let child = Process::new(|| {
        let result: u64 = (1..=100u64).map(|n| n * n).sum();
        child_conn.send(&result).expect("send"); // child_conn.send(result)
    })
    .start()?;
    let result: u64 = parent_conn.recv()?; // parent_conn.recv()
    child.join()?;
    println!("the child's result, over a socket: {result}");
    assert_eq!(result, 338_350);
    Ok(())
}
