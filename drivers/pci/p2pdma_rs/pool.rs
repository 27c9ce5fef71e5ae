// SPDX-License-Identifier: GPL-2.0

//! p2pmem reserved for one mapping, and the device's pages on their way back.
//!
//! The device's genalloc pool of ZONE_DEVICE memory is shared with the C
//! implementation and in-kernel users, so `p2pmem/size` and `p2pmem/available` stay
//! true. A [`Reservation`] holds one reference on each of its live pages; a page goes
//! back to the pool when its last reference (the reservation's, a PTE's or a GUP pin's)
//! is dropped.
//!
//! No mapping may see data of an earlier user, and no fault clears memory: pages are
//! cleared when they come back, and the pool's free pages stay clean. A page this
//! implementation cleared is tagged [`CLEAN`] (in its `struct page`) while it is free;
//! a reservation clears only the pages without the tag, before `mmap` returns: pages
//! never cleared since the device's memory was set up, pages still pinned for I/O when
//! their mapping went, and pages that in-kernel users of the pool or the C mmap path
//! had, which drop the tag when they allocate (`p2pmem_forget_clean()` in
//! `drivers/pci/p2pdma.c`).
//!
//! Pages a mapping never faulted in go back to the pool at once when it is released;
//! the others after an RCU grace period, from a worker that clears each page no one
//! else refers to any more, chunk by chunk, and reports its progress so that `mmap`
//! can wait for it ([`PoolState::wait`]) rather than fail.

use kernel::{
    mm::zone_device::{
        DevicePageRef,
        SplitState,
        PMD_ORDER, //
    },
    new_condvar, new_spinlock,
    page::PAGE_SIZE,
    pci::p2pdma::{
        P2pPages,
        P2pPool, //
    },
    prelude::*,
    sync::{
        atomic::{Atomic, Relaxed},
        Arc,
        CondVar,
        CondVarTimeoutResult,
        SpinLock, //
    },
    time::msecs_to_jiffies,
};

/// How long `mmap` waits at most for releases in flight to make progress before
/// `ENOMEM`.
const RETURN_WAIT_MS: u32 = 2000;

/// Pages a release clears and puts between two reports of progress (2 MiB).
const RELEASE_CHUNK: usize = 512;

/// The tag of a free page this implementation cleared.
const CLEAN: usize = 1;

struct ReturnState {
    /// Bytes of released reservations not back in the pool yet.
    bytes: usize,
    /// Bumped whenever pages come back.
    progress: u64,
}

/// A device's pool as this implementation sees it: what is on its way back.
#[pin_data]
pub(crate) struct PoolState {
    #[pin]
    returning: SpinLock<ReturnState>,
    #[pin]
    progress: CondVar,
    /// The device's memory is going away: pages coming back are not worth clearing.
    gone: Atomic<bool>,
}

impl PoolState {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                returning <- new_spinlock!(ReturnState { bytes: 0, progress: 0 }),
                progress <- new_condvar!(),
                gone: Atomic::new(false),
            }),
            GFP_KERNEL,
        )
    }

    /// The device's memory is going away (unbind): pages that come back from now on
    /// go back as they are, since the pool is destroyed once they are all back.
    pub(crate) fn set_gone(&self) {
        self.gone.store(true, Relaxed);
    }

    /// Progress so far; pass it to [`PoolState::wait`] after a failed reservation.
    pub(crate) fn progress(&self) -> u64 {
        self.returning.lock().progress
    }

    /// Waits until pages come back to the pool after `seen`: returns `Ok` when some
    /// have (the caller tries again), `ENOMEM` when nothing is on its way back, when
    /// even all of it would not make `len` fit in `pool`, or when nothing comes back
    /// for [`RETURN_WAIT_MS`], and `EINTR` on a signal.
    pub(crate) fn wait(&self, seen: u64, pool: &P2pPool, len: usize) -> Result {
        let avail = pool.avail();
        let mut g = self.returning.lock();
        while g.progress == seen {
            if g.bytes == 0 || avail.saturating_add(g.bytes) < len {
                return Err(ENOMEM);
            }
            match self
                .progress
                .wait_interruptible_timeout(&mut g, msecs_to_jiffies(RETURN_WAIT_MS))
            {
                CondVarTimeoutResult::Woken { .. } => {}
                CondVarTimeoutResult::Timeout => return Err(ENOMEM),
                CondVarTimeoutResult::Signal { .. } => return Err(EINTR),
            }
        }
        Ok(())
    }

    fn add_returning(&self, bytes: usize) {
        self.returning.lock().bytes += bytes;
    }

    fn returned(&self, bytes: usize) {
        let mut g = self.returning.lock();
        g.bytes -= bytes;
        g.progress += 1;
        drop(g);
        self.progress.notify_all();
    }
}

/// The pages of one mapping.
pub(crate) struct Reservation {
    pages: P2pPages,
    state: Arc<PoolState>,
    /// Bytes of live pages counted in `state` as on their way back.
    returning: usize,
}

impl Reservation {
    /// Reserves `len` bytes (page-aligned) of p2pmem from `pool`, every page clean:
    /// the pages not known to be clean are cleared here. Fails with `EINTR` if the
    /// task is killed meanwhile.
    ///
    /// The range is 2 MiB-aligned if the pool has such a range free and `len` is at
    /// least that, so that its aligned 2 MiB units can be mapped as PMD-sized folios
    /// ([`Reservation::folio_for_mapping`]). Such a folio goes back to the pool whole,
    /// once no VMA maps any page of it (closing VMAs look at whole 2 MiB blocks).
    pub(crate) fn new(pool: &P2pPool, state: &Arc<PoolState>, len: usize) -> Result<Self> {
        let mut pages = pool.alloc_pages(len, PMD_ORDER, GFP_KERNEL)?;
        // On failure the pages go back to the pool, the ones cleared so far tagged.
        pages.zero_untagged(0, pages.len(), CLEAN)?;
        Ok(Self {
            pages,
            state: state.clone(),
            returning: 0,
        })
    }

    /// The index of the first page in its device pagemap.
    pub(crate) fn first_index(&self) -> usize {
        self.pages.pgmap_index(0).unwrap_or(0)
    }

    /// Pages `start..end` are mapped no more: gives the ones never faulted in back to
    /// the pool now. Returns the part of the range that [`Reservation::split_off`] can
    /// then take away if pages that were faulted in remain there: the range without
    /// the live folios that cross its ends, which still have pages mapped elsewhere
    /// and stay with the reservation.
    pub(crate) fn give_back_part(&mut self, start: usize, end: usize) -> Option<(usize, usize)> {
        self.pages.give_back(start, end);
        let (start, end) = self.pages.splittable(start, end);
        self.pages.any_live_in(start, end).then_some((start, end))
    }

    /// Moves pages `start..end`, after [`Reservation::give_back_part`], into a
    /// reservation of their own, whose page state lives in `mem`, to be released after
    /// a grace period (they count as on their way back meanwhile). Gives `mem` back if
    /// there is nothing to move. Does not sleep.
    pub(crate) fn split_off(
        &mut self,
        start: usize,
        end: usize,
        mem: SplitState,
    ) -> core::result::Result<Self, SplitState> {
        // `give_back_part` ran before `mem` was allocated; a racing release of the
        // same part may have taken its live pages since.
        if !self.pages.any_live_in(start, end) {
            return Err(mem);
        }
        let mut part = Self {
            pages: self.pages.split_off(start, end, mem)?,
            state: self.state.clone(),
            returning: 0,
        };
        part.release_unused();
        Ok(part)
    }

    /// Page `index`, made live first if the mapping has not seen it yet (it is clean
    /// then, and from now on the mapping's), with a reference of the caller's. The
    /// page may be part of a PMD-sized folio made live before.
    pub(crate) fn page_for_mapping(&mut self, index: usize) -> Option<DevicePageRef> {
        if self.pages.make_live(index)? {
            // The mapping may write it: no longer known to be clean.
            self.pages.set_tag(index, 0);
        }
        self.pages.get(index)
    }

    /// The PMD-sized folio that starts at page `index`, made live first as
    /// [`Reservation::page_for_mapping`] does, as a reference on its first page;
    /// `None` if the pages there cannot be one folio (not aligned, or some of them
    /// given back or made live one by one before).
    pub(crate) fn folio_for_mapping(&mut self, index: usize) -> Option<DevicePageRef> {
        if self.pages.make_folio_live(index)? {
            self.pages.set_tag(index, 0);
        }
        self.pages.get_folio(index)
    }

    /// Gives the pages the mapping never faulted in back to the pool now; returns
    /// whether pages that it did fault in remain, which must wait for a grace period.
    /// Those count as on their way back until the reservation is dropped.
    pub(crate) fn release_unused(&mut self) -> bool {
        self.pages.give_back_unused();
        let bytes = self.pages.live_count() * PAGE_SIZE;
        self.state.add_returning(bytes - self.returning);
        self.returning = bytes;
        bytes != 0
    }
}

impl Drop for Reservation {
    /// Clears every live page that nothing else refers to any more (no PTE: the caller
    /// made sure; no GUP pin) and tags it clean, then gives it back; pages still pinned
    /// go back uncleared when their last pin goes, and are cleared by whoever reserves
    /// them next. Runs in process context: it may take a while on uncached memory.
    /// Nothing is cleared once the device's memory is going away.
    fn drop(&mut self) {
        let clear = !self.state.gone.load(Relaxed);
        let n = self.pages.len();
        let mut start = 0;
        while start < n {
            let end = n.min(start + RELEASE_CHUNK);
            // A folio crossing `end` is released whole; the next chunk skips it.
            let released = self.pages.release_live(start, end, |page| {
                if clear && page.is_sole_reference() {
                    page.zero();
                    page.set_tag(CLEAN);
                }
            });
            let bytes = (released * PAGE_SIZE).min(self.returning);
            if bytes != 0 {
                self.returning -= bytes;
                self.state.returned(bytes);
            }
            start = end;
        }
        if self.returning != 0 {
            self.state.returned(self.returning);
        }
    }
}
