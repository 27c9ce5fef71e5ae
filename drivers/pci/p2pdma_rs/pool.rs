// SPDX-License-Identifier: GPL-2.0

//! p2pmem reserved for one mapping.
//!
//! The device's genalloc pool of ZONE_DEVICE memory is shared with the C
//! implementation and in-kernel users, so `p2pmem/size` and `p2pmem/available` stay
//! true. A [`Reservation`] holds one reference on each of its pages; a page goes back
//! to the pool when its last reference (the reservation's, a PTE's or a GUP pin's)
//! is dropped. Pages are zeroed lazily, the first time the mapping faults them in.

use kernel::{
    mm::zone_device::DevicePages,
    page::{BorrowedPage, PAGE_SIZE},
    pci::p2pdma::P2pPool,
    prelude::*,
};

/// The pages of one mapping.
pub(crate) struct Reservation {
    pages: DevicePages,
    /// One bit per page: set once the page has been zeroed for this mapping.
    zeroed: KVec<u64>,
}

impl Reservation {
    /// Reserves `len` bytes (page-aligned) of p2pmem from `pool`.
    pub(crate) fn new(pool: &P2pPool, len: usize) -> Result<Self> {
        let npages = len / PAGE_SIZE;
        let mut zeroed = KVec::with_capacity(npages.div_ceil(64), GFP_KERNEL)?;
        zeroed.resize(npages.div_ceil(64), 0, GFP_KERNEL)?;
        let pages = pool.alloc_pages(len)?;
        Ok(Self { pages, zeroed })
    }

    /// Page `index`, zeroed first if the mapping has not seen it yet.
    pub(crate) fn page_for_mapping(&mut self, index: usize) -> Option<BorrowedPage<'_>> {
        if index >= self.pages.len() {
            return None;
        }
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if self.zeroed[word] & bit == 0 {
            self.pages.zero(index);
            self.zeroed[word] |= bit;
        }
        self.pages.page(index)
    }
}
