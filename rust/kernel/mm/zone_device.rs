// SPDX-License-Identifier: GPL-2.0

//! ZONE_DEVICE pages handed out by a driver's allocator.
//!
//! C headers: [`include/linux/memremap.h`](srctree/include/linux/memremap.h),
//! [`include/linux/page_ref.h`](srctree/include/linux/page_ref.h)
//!
//! Pages of a `dev_pagemap` (device memory with `struct page`s, such as a PCI BAR
//! registered for P2PDMA) are free while their refcount is zero. A driver that takes
//! a range from its own allocator makes a page live by setting its refcount to one
//! and taking a reference on the pagemap's `percpu_ref`; when the page's last
//! reference is dropped, the pagemap's `folio_free` gives it back to the allocator and
//! drops that pagemap reference.
//!
//! [`DevicePages`] holds such a range and makes its pages live one at a time, on first
//! use, so that reserving a large range costs the same as reserving a small one. It
//! owns the first reference of each live page; other holders (page table entries, GUP
//! pins) take their own. On drop, live pages are put and the never-used rest goes
//! straight back to the allocator through [`FreeRange`].
//!
//! This is not [`Page`]'s ownership model: an owned [`Page`] is freed with
//! `__free_pages()`, which must never see a ZONE_DEVICE page.

use crate::{
    alloc::{Flags, KVec},
    bindings,
    error::{code::*, Result},
    page::{BorrowedPage, Page, PAGE_SIZE},
};
use core::ptr::NonNull;

/// The allocator a range of ZONE_DEVICE pages came from, which takes back the part
/// of it that was never made live.
pub trait FreeRange {
    /// Gives `[addr, addr + len)` back.
    ///
    /// # Safety
    ///
    /// The range was allocated from this allocator, is page-aligned, its pages are
    /// free (refcount zero) and nothing uses them afterwards. The caller holds a
    /// reference on the pagemap's `percpu_ref`, which keeps the allocator alive.
    unsafe fn free_range(&self, addr: usize, len: usize);
}

/// A contiguous range of ZONE_DEVICE pages of one `dev_pagemap`, reserved from the
/// pagemap's allocator and made live page by page.
///
/// # Invariants
///
/// - `[addr, addr + count * PAGE_SIZE)` is the kernel direct mapping of `count`
///   ZONE_DEVICE pages of the pagemap whose `percpu_ref` is `pgmap_ref`, allocated
///   from `alloc` and owned by this object;
/// - this object holds one reference on `pgmap_ref`, dropped last in `drop`;
/// - `live` has one bit per page (bit `i % 64` of word `i / 64`); a page whose bit is
///   set is live and this object owns one reference on it; a page whose bit is clear
///   is free (refcount zero) and, unless `unused_returned` is set, owned by this object
///   and used by no one;
/// - once `unused_returned` is set, the pages whose bit is clear have been given back
///   to `alloc` and are not this object's any more; no page is made live after that.
pub struct DevicePages<A: FreeRange> {
    addr: usize,
    count: usize,
    live: KVec<u64>,
    unused_returned: bool,
    pgmap_ref: NonNull<bindings::percpu_ref>,
    alloc: A,
}

// SAFETY: Page and pagemap references may be dropped from any thread; the pagemap's
// `folio_free` runs in whatever context drops a page's last reference, and `A` is
// `Send`.
unsafe impl<A: FreeRange + Send> Send for DevicePages<A> {}
// SAFETY: `&DevicePages` only reads the bitmap and gives out borrowed pages, which are
// `Sync`; `A` is `Sync`.
unsafe impl<A: FreeRange + Sync> Sync for DevicePages<A> {}

impl<A: FreeRange> DevicePages<A> {
    /// Takes ownership of the free pages of `[addr, addr + count * PAGE_SIZE)`,
    /// allocated from `alloc`, with none of them live yet.
    ///
    /// Fails with `ENODEV` when the pagemap is being torn down (`pgmap_ref` is dead),
    /// `EINVAL` for a null `pgmap_ref`, and `ENOMEM`; the range is then still free and
    /// the caller's to give back.
    ///
    /// # Safety
    ///
    /// - the range is the direct mapping of pages of one ZONE_DEVICE `dev_pagemap`
    ///   whose `ref` is `pgmap_ref`, and `pgmap_ref` is valid for the call;
    /// - the pages are free (refcount zero) and the caller has exclusive ownership of
    ///   them, such as just having allocated the range from `alloc`;
    /// - the pagemap's `folio_free` gives a page back to `alloc` and drops one
    ///   reference on `pgmap_ref`.
    pub unsafe fn new(
        addr: usize,
        count: usize,
        pgmap_ref: *mut bindings::percpu_ref,
        alloc: A,
        flags: Flags,
    ) -> Result<Self> {
        let words = count.div_ceil(64);
        let mut live = KVec::with_capacity(words, flags)?;
        live.resize(words, 0, flags)?;
        let pgmap_ref = NonNull::new(pgmap_ref).ok_or(EINVAL)?;
        // SAFETY: `pgmap_ref` is valid per the safety requirements; the RCU read lock is
        // held across the tryget as `percpu_ref_tryget_live_rcu` requires.
        let alive = unsafe {
            bindings::rcu_read_lock();
            let alive = bindings::percpu_ref_tryget_live_rcu(pgmap_ref.as_ptr());
            bindings::rcu_read_unlock();
            alive
        };
        if !alive {
            return Err(ENODEV);
        }
        // INVARIANT: the range is ours and free, no bit is set, and we hold the pagemap
        // reference just taken.
        Ok(Self {
            addr,
            count,
            live,
            unused_returned: false,
            pgmap_ref,
            alloc,
        })
    }

    fn page_at(&self, i: usize) -> NonNull<bindings::page> {
        // SAFETY: `virt_to_page` is arithmetic on a direct-mapping address.
        let p = unsafe { bindings::virt_to_page((self.addr + i * PAGE_SIZE) as *const _) };
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

    /// Whether page `i` has been made live.
    pub fn is_live(&self, i: usize) -> bool {
        i < self.count && self.live[i / 64] & (1 << (i % 64)) != 0
    }

    /// Whether any page has been made live.
    pub fn any_live(&self) -> bool {
        self.live.iter().any(|w| *w != 0)
    }

    /// Makes page `i` live if it is not yet; returns whether it was made live now.
    ///
    /// A page made live now holds whatever the device memory held: the caller decides
    /// whether to clear it (see [`DevicePages::zero`]) before anyone else sees it.
    /// Returns `None` for an index out of range, and for a page given back by
    /// [`DevicePages::give_back_unused`].
    pub fn make_live(&mut self, i: usize) -> Option<bool> {
        if i >= self.count {
            return None;
        }
        if self.is_live(i) {
            return Some(false);
        }
        if self.unused_returned {
            return None;
        }
        let page = self.page_at(i);
        // SAFETY: By the type invariant the page is free and ours, so no one else looks
        // at its refcount, and the pagemap is alive (we hold a reference on it). The
        // page's reference on the pagemap is dropped by `folio_free`.
        unsafe {
            bindings::set_page_count(page.as_ptr(), 1);
            bindings::percpu_ref_get(self.pgmap_ref.as_ptr());
        }
        // INVARIANT: page `i` is now live with one reference, which is ours.
        self.live[i / 64] |= 1 << (i % 64);
        Some(true)
    }

    /// Gives every page that was never made live back to the allocator now, rather
    /// than when `self` is dropped; pages made live stay. No page can be made live
    /// afterwards.
    ///
    /// Such pages were never handed to anyone, so nothing (no page table entry, no
    /// lockless page table walker) can refer to them: unlike the live pages, they need
    /// no grace period before they are reused.
    pub fn give_back_unused(&mut self) {
        if self.unused_returned {
            return;
        }
        let mut i = 0;
        while i < self.count {
            if self.is_live(i) {
                i += 1;
                continue;
            }
            let mut end = i + 1;
            while end < self.count && !self.is_live(end) {
                end += 1;
            }
            // SAFETY: By the type invariant pages `i..end` are free, came from `alloc`
            // and are used by no one; we hold the pagemap reference.
            unsafe {
                self.alloc
                    .free_range(self.addr + i * PAGE_SIZE, (end - i) * PAGE_SIZE)
            };
            i = end;
        }
        // INVARIANT: the pages whose bit is clear have just been given back.
        self.unused_returned = true;
    }

    /// Live page `i`, borrowed from `self`; `None` if it is out of range or not live.
    pub fn page(&self, i: usize) -> Option<BorrowedPage<'_>> {
        if !self.is_live(i) {
            return None;
        }
        // SAFETY: By the type invariant page `i` is live and we hold a reference on it
        // for as long as `self` is borrowed.
        Some(unsafe { BorrowedPage::from_raw(self.page_at(i)) })
    }

    /// Fills live page `i` with zeroes through the kernel mapping.
    ///
    /// Device memory may be uncached and, in a virtual machine, is often an emulated
    /// MMIO region where each access traps: the page is written with aligned 8-byte
    /// stores, never with a `memset` that may store one byte at a time.
    pub fn zero(&self, i: usize) {
        if !self.is_live(i) {
            return;
        }
        let base = (self.addr + i * PAGE_SIZE) as *mut u64;
        for w in 0..PAGE_SIZE / core::mem::size_of::<u64>() {
            // SAFETY: By the type invariant page `i` is mapped at `base`, which is
            // page-aligned, and is live with a reference held by us; writing device
            // memory through the direct map is how in-kernel users of the memory
            // access it. Volatile, so that the compiler keeps the 8-byte stores.
            unsafe { base.add(w).write_volatile(0) };
        }
    }
}

/// Current reference count of a page (for diagnostics and tests).
pub fn page_ref_count(page: &Page) -> i32 {
    // SAFETY: `page` is a valid page.
    unsafe { bindings::page_ref_count(page.as_ptr()) }
}

impl<A: FreeRange> Drop for DevicePages<A> {
    fn drop(&mut self) {
        self.give_back_unused();
        for i in 0..self.count {
            if self.is_live(i) {
                // SAFETY: By the type invariant we own one reference on the live page;
                // the last `put_page` hands it to the pagemap's `folio_free`.
                unsafe { bindings::put_page(self.page_at(i).as_ptr()) };
            }
        }
        // SAFETY: The reference taken in `new`; nothing here is used after it.
        unsafe { bindings::percpu_ref_put(self.pgmap_ref.as_ptr()) };
    }
}
