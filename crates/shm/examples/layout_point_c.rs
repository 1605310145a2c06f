//! One of three separately built programs behind `tests/layout.rs`: opens
//! the named segment `argv[1]` as a `Point` whose `y` is a `u64`, unlike
//! `layout_point_a`'s, and prints `opened ..` or `error: ..`.
// ci: not run (a helper of tests/layout.rs, which gives it its arguments)

/// The point, as this program declares it: `y` is wider.
#[derive(shm::ShmSafe)]
#[repr(C)]
struct Point {
    x: u32,
    y: u64,
}

fn main() {
    let name = std::env::args().nth(1).expect("usage: layout_point_c NAME");
    match shm::Shared::<Point>::open(&name) {
        Ok(point) => println!("opened x={} y={}", point.x, point.y),
        Err(err) => {
            println!("error: {err}");
            std::process::exit(1);
        }
    }
}
