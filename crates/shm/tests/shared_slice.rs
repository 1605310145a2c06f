//! `SharedSlice<T>` between processes.

use std::sync::atomic::{AtomicU32, Ordering};

use shm::atomic::{AtomicF32, AtomicF64};
use shm::{Error, Shared, SharedSlice};
use testkit::{
    helper_args, helper_report, in_processes, reported, run_helper, unique_name, GENEROUS,
};

#[test]
fn children_fill_their_own_slots() {
    let slots = SharedSlice::from_fn(8, |_| AtomicU32::new(0)).unwrap();
    in_processes(8, |i| slots[i].store(i as u32 * 10, Ordering::SeqCst));
    let seen: Vec<u32> = slots.iter().map(|s| s.load(Ordering::SeqCst)).collect();
    assert_eq!(seen, [0, 10, 20, 30, 40, 50, 60, 70]);
}

/// Python's `Array('d', 4)`: forked workers add into one slice of floats.
/// Every value added is a multiple of 1/4 far below 2^53, so every partial
/// sum is exact and the totals are exact whatever the order of the adds.
#[test]
fn forked_workers_add_into_a_shared_slice_of_floats_exactly() {
    let totals = SharedSlice::from_fn(4, |_| AtomicF64::new(0.0)).unwrap();
    let count = Shared::new(AtomicF32::new(0.0)).unwrap();
    in_processes(4, |_| {
        for _ in 0..2_000 {
            for (slot, total) in totals.iter().enumerate() {
                total.fetch_add(0.25 * (slot as f64 + 1.0), Ordering::Relaxed);
            }
            totals[0].fetch_sub(0.5, Ordering::Relaxed);
            count.fetch_add(1.0, Ordering::Relaxed);
        }
    });
    let seen: Vec<f64> = totals.iter().map(|t| t.load(Ordering::Relaxed)).collect();
    // 8,000 adds of 0.25, 0.5, 0.75, 1.0, and 8,000 subtractions of 0.5 in slot 0.
    assert_eq!(seen, [-2_000.0, 4_000.0, 6_000.0, 8_000.0]);
    assert_eq!(count.load(Ordering::Relaxed), 8_000.0);
}

#[test]
fn from_slice_copies_the_values() {
    let values = SharedSlice::from_slice(&[1u64, 2, 3]).unwrap();
    assert_eq!(&*values, &[1, 2, 3]);
    let empty = SharedSlice::<u64>::from_slice(&[]).unwrap();
    assert!(empty.is_empty());
}

/// The unrelated process's side of `an_unrelated_process_sees_the_length`.
#[test]
fn helper_sum_slice() {
    let Some(args) = helper_args() else { return };
    let slice = SharedSlice::<AtomicU32>::open(&args[0]).expect("open by name");
    helper_report("len", slice.len());
    helper_report(
        "sum",
        slice.iter().map(|v| v.load(Ordering::SeqCst)).sum::<u32>(),
    );
}

#[test]
fn an_unrelated_process_sees_the_length() {
    let name = unique_name("slice");
    let slice = SharedSlice::create(&name, 5, |i| AtomicU32::new(i as u32 + 1)).unwrap();
    let out = run_helper("helper_sum_slice", &[&name], GENEROUS);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(reported(&out, "len").as_deref(), Some("5"));
    assert_eq!(reported(&out, "sum").as_deref(), Some("15"));
    drop(slice);
}

#[test]
fn open_or_create_checks_the_length() {
    let name = unique_name("slice-len");
    let slice = SharedSlice::open_or_create(&name, 3, |_| AtomicU32::new(9)).unwrap();
    assert!(slice.owns_name());
    let again = SharedSlice::open_or_create(&name, 3, |_| AtomicU32::new(0)).unwrap();
    assert!(!again.owns_name());
    assert_eq!(again[2].load(Ordering::SeqCst), 9, "opened, not re-created");
    let err = SharedSlice::open_or_create(&name, 4, |_| AtomicU32::new(0)).unwrap_err();
    assert!(matches!(err, Error::TypeMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("slice of 3"), "{err}");
}

#[test]
fn zz_this_suite_left_no_names_behind() {
    assert_eq!(
        testkit::leaked_names(shm::pid::current()),
        Vec::<String>::new()
    );
}
