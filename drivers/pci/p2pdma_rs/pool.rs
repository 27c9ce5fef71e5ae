// SPDX-License-Identifier: GPL-2.0

//! p2pmem reserved for one mapping.
//!
//! The device's genalloc pool of ZONE_DEVICE memory is shared with the C
//! implementation and in-kernel users, so `p2pmem/size` and `p2pmem/available` stay
//! true. A [`Reservation`] holds one reference on each of its live pages; a page goes back
//! to the pool when its last reference (the reservation's, a PTE's or a GUP pin's)
//! is dropped. Nothing is done per page at reservation time: a page is made live and
//! zeroed the first time the mapping faults it in, and pages never faulted in go
//! straight back to the pool when the mapping is released.

use kernel::{
    new_condvar, new_spinlock_irq,
    page::{
        BorrowedPage,
        PAGE_SIZE, //
    },
    pci::p2pdma::{
        P2pPages,
        P2pPool, //
    },
    prelude::*,
    sync::{
        Arc,
        CondVar,
        CondVarTimeoutResult,
        SpinLockIrq, //
    },
    time::msecs_to_jiffies,
};

/// How long `mmap` waits at most for one release in flight before `ENOMEM`.
const RETURN_WAIT_MS: u32 = 2000;

struct ReturnState {
    /// Bytes of released reservations waiting for their grace period.
    bytes: usize,
    /// Releases that have completed (their pages are back in the pool).
    completed: u64,
}

/// A device's p2pmem on its way back to the pool: reservations released with pages
/// that were faulted in go back only after an RCU grace period, from the RCU
/// callback. `mmap` waits here, rather than fail, when the pool is short only
/// because of them.
#[pin_data]
pub(crate) struct Returning {
    // Irq-safe: also taken by the RCU callback, in softirq context.
    #[pin]
    state: SpinLockIrq<ReturnState>,
    #[pin]
    done: CondVar,
}

impl Returning {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                state <- new_spinlock_irq!(ReturnState { bytes: 0, completed: 0 }),
                done <- new_condvar!(),
            }),
            GFP_KERNEL,
        )
    }

    /// Releases completed so far; pass it to [`Returning::wait`] after a failed
    /// reservation.
    pub(crate) fn completed(&self) -> u64 {
        self.state.lock().completed
    }

    /// Waits until a release completes after `seen` releases had: returns `Ok` when
    /// one has (the caller tries again), `ENOMEM` when none is in flight or even all
    /// of them would not make `len` fit in `pool`, or when none completes in time,
    /// and `EINTR` on a signal.
    pub(crate) fn wait(&self, seen: u64, pool: &P2pPool, len: usize) -> Result {
        let avail = pool.avail();
        let mut g = self.state.lock();
        while g.completed == seen {
            if g.bytes == 0 || avail.saturating_add(g.bytes) < len {
                return Err(ENOMEM);
            }
            match self
                .done
                .wait_interruptible_timeout(&mut g, msecs_to_jiffies(RETURN_WAIT_MS))
            {
                CondVarTimeoutResult::Woken { .. } => {}
                CondVarTimeoutResult::Timeout => return Err(ENOMEM),
                CondVarTimeoutResult::Signal { .. } => return Err(EINTR),
            }
        }
        Ok(())
    }
}

/// The pages of one mapping.
pub(crate) struct Reservation {
    /// `None` only while being dropped.
    pages: Option<P2pPages>,
    /// Where to report that the pages are back, once released after a grace period.
    returning: Option<(Arc<Returning>, usize)>,
}

impl Reservation {
    /// Reserves `len` bytes (page-aligned) of p2pmem from `pool`.
    pub(crate) fn new(pool: &P2pPool, len: usize) -> Result<Self> {
        let pages = pool.alloc_pages(len, GFP_KERNEL)?;
        Ok(Self {
            pages: Some(pages),
            returning: None,
        })
    }

    fn pages(&mut self) -> &mut P2pPages {
        // INVARIANT: `pages` is `None` only in `drop`.
        self.pages.as_mut().expect("pages taken before drop")
    }

    /// Page `index`, made live and zeroed first if the mapping has not seen it yet.
    pub(crate) fn page_for_mapping(&mut self, index: usize) -> Option<BorrowedPage<'_>> {
        let pages = self.pages();
        if pages.make_live(index)? {
            pages.zero(index);
        }
        pages.page(index)
    }

    /// Gives the pages the mapping never faulted in back to the pool now; returns
    /// whether pages that it did fault in remain, which must wait for a grace period.
    /// Those are reported to `returning` when they are back.
    pub(crate) fn release_unused(&mut self, returning: &Arc<Returning>) -> bool {
        let pages = self.pages();
        pages.give_back_unused();
        if !pages.any_live() {
            return false;
        }
        let bytes = pages.len() * PAGE_SIZE;
        returning.state.lock().bytes += bytes;
        self.returning = Some((returning.clone(), bytes));
        true
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // The live pages go back to the pool (unless pinned elsewhere) here ...
        drop(self.pages.take());
        // ... and then `mmap` calls waiting for them may try again.
        if let Some((r, bytes)) = self.returning.take() {
            let mut g = r.state.lock();
            g.bytes -= bytes;
            g.completed += 1;
            drop(g);
            r.done.notify_all();
        }
    }
}
