use std::time::Instant;
fn bare() { unsafe { let pid = libc::fork(); if pid == 0 { libc::_exit(42) } let mut s = 0; libc::waitpid(pid, &mut s, 0); } }
fn proc_() { let c = daemon::Process::new(|| 42u64).start().unwrap(); assert_eq!(c.join().unwrap(), 42); }
fn main() { let _big: Vec<u8> = vec![1u8; 64<<20]; let which = std::env::args().nth(1).unwrap(); let f: fn() = if which == "bare" { bare } else { proc_ }; let n = 3000; let s = Instant::now(); for _ in 0..n { f() } println!("{which}: {:.1} us", s.elapsed().as_secs_f64()*1e6/n as f64); }
