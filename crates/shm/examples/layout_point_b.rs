//! One of three separately built programs behind `tests/layout.rs`: opens
//! the named segment `argv[1]` as a `b::shapes::geo::Point`, laid out like
//! `layout_point_a`'s but declared in another module of another program,
//! and prints `opened x=.. y=..` or `error: ..`.
// ci: not run (a helper of tests/layout.rs, which gives it its arguments)

mod b {
    pub(crate) mod shapes {
        pub(crate) mod geo {
            /// The point, as this program declares it: same fields.
            #[derive(shm::ShmSafe)]
            #[repr(C)]
            pub(crate) struct Point {
                pub(crate) x: u32,
                pub(crate) y: u32,
            }
        }
    }
}

fn main() {
    let name = std::env::args().nth(1).expect("usage: layout_point_b NAME");
    match shm::Shared::<b::shapes::geo::Point>::open(&name) {
        Ok(point) => println!("opened x={} y={}", point.x, point.y),
        Err(err) => {
            println!("error: {err}");
            std::process::exit(1);
        }
    }
}
