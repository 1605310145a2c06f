//! Beyond the lesson, 进程池: a pool of worker processes maps a plain
//! function over a list (Python's `Pool(4).map(square, range(10))`).
//!
//! `cargo run -p procsync-pool --example pool_map`

use pool::Pool;

// def square(x): return x * x
fn square(x: u64) -> u64 {
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // pool = Pool(4)
    let pool = Pool::new(4)?;
    // print(pool.map(square, range(10))): one Result per input, in order
    let squares = pool
        .map(square, 0..10)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    println!("{squares:?}");
    assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
    pool.close(); // pool.close()
    pool.join()?; // pool.join()
    Ok(())
}
