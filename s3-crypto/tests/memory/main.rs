//! Memory bounds of every decrypt and download path, proven with a capping global allocator
//! ([`cap::Cap`]): each case allows what is allocated now plus the budget the path states, then
//! feeds a hostile input (a header that announces huge frames, bodies, key counts or key lengths
//! over a tiny body; an oversized instruction file). An allocation past the cap fails and aborts
//! this binary ("memory allocation of N bytes failed"), so a path that sizes a buffer by a length
//! in its input cannot pass. Tests run one at a time, each holding [`serial`] from its first line:
//! the allocator counts every thread, and a cap set by one test would fail another's set-up.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is the failure report

use std::alloc::System;
use std::sync::Mutex;

use cap::Cap;

mod esdk;
#[path = "../common/garage.rs"]
mod garage_store;
mod store;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const MIB: usize = 1 << 20;

/// Lifts the cap when a case ends, also by a panic (whose report allocates).
struct Uncap;

impl Drop for Uncap {
    fn drop(&mut self) {
        let _ = ALLOCATOR.set_limit(usize::MAX);
    }
}

/// Held for the whole of each test: one test at a time.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` allowed at most `budget` bytes beyond what is allocated when it starts (call it
/// while holding [`serial`]).
pub fn within<T>(budget: usize, f: impl FnOnce() -> T) -> T {
    let _uncap = Uncap;
    ALLOCATOR
        .set_limit(ALLOCATOR.allocated() + budget)
        .expect("the cap is above what is allocated");
    f()
}

/// The cap works: an allocation beyond the budget fails (here caught by `try_reserve`, where
/// the paths under test would abort).
#[test]
fn an_allocation_past_the_budget_fails() {
    let _one = serial();
    within(MIB, || {
        let mut v: Vec<u8> = Vec::new();
        assert!(v.try_reserve_exact(2 * MIB).is_err());
        assert!(v.try_reserve_exact(MIB / 2).is_ok());
    });
}
