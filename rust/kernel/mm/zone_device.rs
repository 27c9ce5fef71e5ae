// SPDX-License-Identifier: GPL-2.0

//! ZONE_DEVICE pages handed out by a driver's allocator.
//!
//! C headers: [`include/linux/memremap.h`](srctree/include/linux/memremap.h),
//! [`include/linux/page_ref.h`](srctree/include/linux/page_ref.h)
//!
//! Pages of a `dev_pagemap` (device memory with `struct page`s, such as a PCI BAR
//! registered for P2PDMA) are free while their refcount is zero. A driver that takes
//! a range from its own allocator makes the pages live with a refcount of one and a
//! reference on the pagemap's `percpu_ref` each; when a page's last reference is
//! dropped, the pagemap's `folio_free` gives it back to the allocator and drops the
//! pagemap reference. [`DevicePages`] owns the first reference of each page of such a
//! range; other holders (page table entries, GUP pins) take their own.
//!
//! This is not [`Page`]'s ownership model: an owned [`Page`] is freed with
//! `__free_pages()`, which must never see a ZONE_DEVICE page.

use crate::{
    bindings,
    error::{code::*, Result},
    page::{BorrowedPage, Page, PAGE_SIZE},
};
use core::ptr::NonNull;

/// A contiguous range of live ZONE_DEVICE pages, each with one reference owned here.
///
/// # Invariants
///
/// - `[addr, addr + count * PAGE_SIZE)` is the kernel direct mapping of `count`
///   ZONE_DEVICE pages of one `dev_pagemap`;
/// - this object owns one reference on each of them, dropped in `drop`.
pub struct DevicePages {
    addr: usize,
    count: usize,
}

// SAFETY: Page references may be dropped from any thread; the pagemap's `folio_free`
// is called from whatever context drops the last reference.
unsafe impl Send for DevicePages {}
// SAFETY: `&DevicePages` only gives out borrowed pages, which are `Sync`.
unsafe impl Sync for DevicePages {}

impl DevicePages {
    /// Makes the free pages of `[addr, addr + count * PAGE_SIZE)` live: sets each
    /// refcount to one and takes one reference on `pgmap_ref` per page, as
    /// `folio_free` drops one per page.
    ///
    /// Fails with `ENODEV` when the pagemap is being torn down (`pgmap_ref` is dead);
    /// the range is then still free and the caller's to give back.
    ///
    /// # Safety
    ///
    /// - the range is the direct mapping of pages of one ZONE_DEVICE `dev_pagemap`
    ///   whose `ref` is `pgmap_ref`, and `pgmap_ref` is valid for the call;
    /// - the pages are free (refcount zero) and the caller has exclusive ownership of
    ///   them, such as just having allocated the range from the pagemap's allocator;
    /// - the pagemap's `folio_free` gives a page back to that allocator and drops one
    ///   reference on `pgmap_ref`.
    pub unsafe fn activate(
        addr: usize,
        count: usize,
        pgmap_ref: *mut bindings::percpu_ref,
    ) -> Result<Self> {
        // SAFETY: `pgmap_ref` is valid per the safety requirements; the RCU read lock is
        // held across the tryget as `percpu_ref_tryget_live_rcu` requires.
        let live = unsafe {
            bindings::rcu_read_lock();
            let live = bindings::percpu_ref_tryget_live_rcu(pgmap_ref);
            bindings::rcu_read_unlock();
            live
        };
        if !live {
            return Err(ENODEV);
        }
        for i in 0..count {
            let page = Self::page_at(addr, i);
            // SAFETY: The page is a free ZONE_DEVICE page owned by the caller, so no one
            // else looks at its refcount; `pgmap_ref` is alive (we hold a reference).
            unsafe {
                bindings::set_page_count(page.as_ptr(), 1);
                bindings::percpu_ref_get(pgmap_ref);
            }
        }
        // SAFETY: Drops the reference taken by the tryget above; the pages hold their own.
        unsafe { bindings::percpu_ref_put(pgmap_ref) };
        // INVARIANT: the range is the direct mapping of `count` ZONE_DEVICE pages, each
        // with one reference that is now ours.
        Ok(Self { addr, count })
    }

    fn page_at(addr: usize, i: usize) -> NonNull<bindings::page> {
        // SAFETY: `virt_to_page` is arithmetic on a direct-mapping address.
        let p = unsafe { bindings::virt_to_page((addr + i * PAGE_SIZE) as *const _) };
        // `virt_to_page` of a direct-mapping address is never null.
        NonNull::new(p).expect("virt_to_page returned NULL")
    }

    /// Number of pages.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Kernel virtual address of the first page.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Page `i` of the range, borrowed from `self`.
    pub fn page(&self, i: usize) -> Option<BorrowedPage<'_>> {
        if i >= self.count {
            return None;
        }
        // SAFETY: By the type invariant page `i` is live and we hold a reference on it
        // for as long as `self` is borrowed.
        Some(unsafe { BorrowedPage::from_raw(Self::page_at(self.addr, i)) })
    }

    /// Fills page `i` with zeroes through the kernel mapping.
    pub fn zero(&self, i: usize) {
        if i < self.count {
            // SAFETY: By the type invariant, page `i` is mapped at this address and is
            // live; writing device memory through the direct map is how in-kernel
            // users of the memory access it.
            unsafe { core::ptr::write_bytes((self.addr + i * PAGE_SIZE) as *mut u8, 0, PAGE_SIZE) };
        }
    }
}

/// Current reference count of a page (for diagnostics and tests).
pub fn page_ref_count(page: &Page) -> i32 {
    // SAFETY: `page` is a valid page.
    unsafe { bindings::page_ref_count(page.as_ptr()) }
}

impl Drop for DevicePages {
    fn drop(&mut self) {
        for i in 0..self.count {
            // SAFETY: By the type invariant we own one reference on the page; the last
            // `put_page` hands it to the pagemap's `folio_free`.
            unsafe { bindings::put_page(Self::page_at(self.addr, i).as_ptr()) };
        }
    }
}
