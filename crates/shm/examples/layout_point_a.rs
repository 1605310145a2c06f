//! One of three separately built programs behind `tests/layout.rs`: creates
//! the named segment `argv[1]` holding an `a::geo::Point { x: 3, y: 4 }`,
//! prints `ready`, and keeps it until its standard input closes.
// ci: not run (a helper of tests/layout.rs, which gives it its arguments)

mod a {
    pub(crate) mod geo {
        /// The point, as this program declares it.
        #[derive(shm::ShmSafe)]
        #[repr(C)]
        pub(crate) struct Point {
            pub(crate) x: u32,
            pub(crate) y: u32,
        }
    }
}

fn main() {
    let name = std::env::args().nth(1).expect("usage: layout_point_a NAME");
    let point = shm::Shared::create(&name, a::geo::Point { x: 3, y: 4 }).expect("create");
    println!("ready");
    // Hold the segment until the test closes our standard input.
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
    drop(point);
}
