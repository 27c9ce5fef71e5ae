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
    page::BorrowedPage,
    pci::p2pdma::{P2pPages, P2pPool},
    prelude::*,
};

/// The pages of one mapping.
pub(crate) struct Reservation {
    pages: P2pPages,
}

impl Reservation {
    /// Reserves `len` bytes (page-aligned) of p2pmem from `pool`.
    pub(crate) fn new(pool: &P2pPool, len: usize) -> Result<Self> {
        let pages = pool.alloc_pages(len, GFP_KERNEL)?;
        Ok(Self { pages })
    }

    /// Page `index`, made live and zeroed first if the mapping has not seen it yet.
    pub(crate) fn page_for_mapping(&mut self, index: usize) -> Option<BorrowedPage<'_>> {
        if self.pages.make_live(index)? {
            self.pages.zero(index);
        }
        self.pages.page(index)
    }

    /// Gives the pages the mapping never faulted in back to the pool now; returns
    /// whether pages that it did fault in remain, which must wait for a grace period.
    pub(crate) fn release_unused(&mut self) -> bool {
        self.pages.give_back_unused();
        self.pages.any_live()
    }
}
