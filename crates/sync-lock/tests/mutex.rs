//! `Mutex<T>` across fork and by name, and repairing data after a holder died.

use daemon::{JoinError, Process};
use shm::{Futex, Shared, ShmSafe};
use sync_lock::Mutex;
use testkit::{
    helper_args, helper_report, in_processes, park_until_killed, raise, reported, run_helper,
    unique_name, wait_for, GENEROUS,
};

#[derive(ShmSafe, Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Account {
    /// Two halves that every update keeps equal: a half-done update shows.
    debit: u64,
    credit: u64,
}

#[test]
fn forked_children_update_the_data_exactly() {
    let account = Shared::new(Mutex::new(Account {
        debit: 0,
        credit: 0,
    }))
    .unwrap();
    in_processes(3, |_| {
        for _ in 0..20_000 {
            let mut a = account.lock().unwrap();
            a.debit += 1;
            a.credit += 1;
        }
    });
    assert_eq!(
        *account.lock().unwrap(),
        Account {
            debit: 60_000,
            credit: 60_000
        }
    );
}

/// The unrelated process's side of `two_programs_share_a_named_mutex`.
#[test]
fn helper_add_under_the_named_mutex() {
    let Some(args) = helper_args() else { return };
    let account = Shared::<Mutex<Account>>::open(&args[0]).expect("open by name");
    for _ in 0..5_000 {
        let mut a = account.lock().unwrap_or_else(|d| d.into_inner());
        a.debit += 1;
        a.credit += 1;
    }
    helper_report("done", true);
}

#[test]
fn two_programs_share_a_named_mutex() {
    let name = unique_name("mutex");
    let account = Shared::create(
        &name,
        Mutex::new(Account {
            debit: 0,
            credit: 0,
        }),
    )
    .unwrap();
    // A forked child adds concurrently with the separately started helper.
    let child = Process::new(|| {
        for _ in 0..5_000 {
            let mut a = account.lock().unwrap();
            a.debit += 1;
            a.credit += 1;
        }
    })
    .start()
    .unwrap();
    let out = run_helper("helper_add_under_the_named_mutex", &[&name], GENEROUS);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(reported(&out, "done").as_deref(), Some("true"));
    child.join().unwrap();
    assert_eq!(
        *account.lock().unwrap(),
        Account {
            debit: 10_000,
            credit: 10_000
        }
    );
}

#[test]
fn a_half_done_update_is_flagged_and_repaired() {
    let account = Shared::new(Mutex::new(Account {
        debit: 0,
        credit: 0,
    }))
    .unwrap();
    let halfway = Shared::new(Futex::new(0)).unwrap();
    let child = Process::new(|| -> u8 {
        let mut a = account.lock().unwrap();
        a.debit += 1; // ... and dies before the credit
        raise(&halfway);
        park_until_killed();
        0
    })
    .start()
    .unwrap();
    wait_for(&halfway, 1);
    child.kill().unwrap();
    assert!(matches!(child.join(), Err(JoinError::Signaled { .. })));

    let died = account.lock().expect_err("the holder's death is reported");
    let mut a = died.into_inner();
    assert_eq!(
        *a,
        Account {
            debit: 1,
            credit: 0
        },
        "the half-done state is visible"
    );
    a.credit = a.debit; // repair
    drop(a);
    assert_eq!(
        *account.lock().expect("reported once"),
        Account {
            debit: 1,
            credit: 1
        }
    );
}

#[test]
fn get_mut_and_into_inner_need_no_lock() {
    let mut m = Mutex::new(Account {
        debit: 1,
        credit: 2,
    });
    m.get_mut().debit = 5;
    assert_eq!(
        m.into_inner(),
        Account {
            debit: 5,
            credit: 2
        }
    );
}

#[test]
fn zz_this_suite_left_no_names_behind() {
    assert_eq!(
        testkit::leaked_names(shm::pid::current()),
        Vec::<String>::new()
    );
}

/// A named `Mutex<T>` is checked by `T`'s layout, field by field: the same
/// type name and size with its fields in another order is refused, and the
/// error names the difference (described as an opaque `Mutex<Tickets>`
/// of 16 bytes, both would have opened).
#[test]
fn a_named_mutex_whose_data_changed_shape_is_refused() {
    mod v1 {
        #[derive(shm::ShmSafe)]
        #[repr(C)]
        pub(super) struct Tickets {
            pub(super) left: u32,
            pub(super) sold: u32,
        }
    }
    mod v2 {
        #[derive(shm::ShmSafe)]
        #[repr(C)]
        pub(super) struct Tickets {
            pub(super) sold: u32,
            pub(super) left: u32,
        }
    }
    let name = testkit::unique_name("mutex-shape");
    let db = Shared::create(&name, Mutex::new(v1::Tickets { left: 1, sold: 0 })).unwrap();
    assert!(Shared::<Mutex<v1::Tickets>>::open(&name).is_ok());
    match Shared::<Mutex<v2::Tickets>>::open(&name) {
        Err(shm::Error::TypeMismatch { difference, .. }) => {
            assert!(
                difference.contains("sold") || difference.contains("left"),
                "{difference}"
            );
        }
        other => panic!("expected TypeMismatch, got {:?}", other.map(|_| ())),
    }
    drop(db);
}
