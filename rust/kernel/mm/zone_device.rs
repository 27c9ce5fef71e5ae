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
//! pins) take their own. Its owner gives pages back in parts ([`DevicePages::give_back`],
//! [`DevicePages::release_live`]) or all at once by dropping it: pages never made live
//! go straight back to the allocator through [`FreeRange`], live pages are put.
//!
//! While the range is reserved, each of its pages carries a tag for the pagemap's owner
//! (`zone_device_data`, which the mm core sets to zero when the pagemap is created and
//! never touches afterwards): a driver can record there, for example, that it cleared a
//! page before giving it back, and find the mark when it reserves the page again.
//!
//! This is not [`Page`]'s ownership model: an owned [`Page`] is freed with
//! `__free_pages()`, which must never see a ZONE_DEVICE page.

use crate::{
    alloc::{Flags, KVVec},
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

/// A bitmap with one bit per page, allocated with `kvmalloc` (a 64 GiB range of 4 KiB
/// pages needs 2 MiB of bits).
struct Bits(KVVec<u64>);

impl Bits {
    fn new(count: usize, flags: Flags) -> Result<Self> {
        let words = count.div_ceil(64);
        let mut v = KVVec::with_capacity(words, flags)?;
        v.resize(words, 0, flags)?;
        Ok(Self(v))
    }

    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }

    /// The first index in `from..to` whose bit is set, or `to`.
    fn next_set(&self, mut from: usize, to: usize) -> usize {
        while from < to {
            let w = self.0[from / 64] >> (from % 64);
            if w == 0 {
                from = (from / 64 + 1) * 64;
                continue;
            }
            from += w.trailing_zeros() as usize;
            break;
        }
        from.min(to)
    }
}

/// A live page being released by [`DevicePages::release_live`], while the reference
/// that the [`DevicePages`] owns is still held.
pub struct LivePage<'a> {
    page: NonNull<bindings::page>,
    addr: usize,
    _p: core::marker::PhantomData<&'a ()>,
}

impl LivePage<'_> {
    /// Whether the reference being released is the only one: no page table entry and
    /// no GUP pin refers to the page, so it returns to the allocator when released.
    ///
    /// No one can take a new reference to a page that nothing else refers to, as long
    /// as the page is in no page table and lockless page table walkers that saw it
    /// there are done (the owner's business: unmap, then wait for a grace period).
    pub fn is_sole_reference(&self) -> bool {
        // SAFETY: The page is valid and we hold a reference on it.
        unsafe { bindings::page_ref_count(self.page.as_ptr()) == 1 }
    }

    /// Fills the page with zeroes; see [`DevicePages::zero`].
    pub fn zero(&mut self) {
        // SAFETY: The page is ours (we hold a reference) and mapped at `addr` in the
        // kernel's direct map.
        unsafe { zero_page_at(self.addr) };
    }

    /// Sets the page's owner tag (see [`DevicePages::set_tag`]); it stays with the
    /// page while the page is free.
    pub fn set_tag(&mut self, tag: usize) {
        // SAFETY: The page is valid; `zone_device_data` belongs to the pagemap's owner.
        unsafe { bindings::page_set_zone_device_data(self.page.as_ptr(), tag as *mut _) };
    }
}

/// A reference on a live ZONE_DEVICE page, taken from a [`DevicePages`] with
/// [`DevicePages::get`], that outlives the borrow of it: dropping it puts the page.
///
/// # Invariants
///
/// `page` is a valid page and this object owns one reference on it.
pub struct DevicePageRef {
    page: NonNull<bindings::page>,
}

// SAFETY: A page reference may be dropped from any thread.
unsafe impl Send for DevicePageRef {}
// SAFETY: `&DevicePageRef` only gives out borrowed pages, which are `Sync`.
unsafe impl Sync for DevicePageRef {}

impl DevicePageRef {
    /// The page, borrowed from this reference.
    pub fn page(&self) -> BorrowedPage<'_> {
        // SAFETY: By the type invariant we hold a reference on the page for as long as
        // `self` is borrowed.
        unsafe { BorrowedPage::from_raw(self.page) }
    }
}

impl Drop for DevicePageRef {
    fn drop(&mut self) {
        // SAFETY: By the type invariant we own one reference; if it is the last, the
        // pagemap's `folio_free` takes the page back.
        unsafe { bindings::put_page(self.page.as_ptr()) };
    }
}

/// Memory for the page state of a range split off a [`DevicePages`]: allocate it
/// before taking a lock under which [`DevicePages::split_off`] runs.
pub struct SplitState {
    live: Bits,
    gone: Bits,
    count: usize,
}

impl SplitState {
    /// Memory for the state of `count` pages.
    pub fn new(count: usize, flags: Flags) -> Result<Self> {
        Ok(Self {
            live: Bits::new(count, flags)?,
            gone: Bits::new(count, flags)?,
            count,
        })
    }
}

/// Writes zeroes to the page at `addr` with aligned 8-byte stores.
///
/// # Safety
///
/// `addr` is the page-aligned direct-map address of a page the caller may write.
unsafe fn zero_page_at(addr: usize) {
    let base = addr as *mut u64;
    for w in 0..PAGE_SIZE / core::mem::size_of::<u64>() {
        // SAFETY: Per the safety requirements the page is mapped at `base` and
        // writable by us. Volatile, so that the compiler keeps the 8-byte stores.
        unsafe { base.add(w).write_volatile(0) };
    }
}

/// A contiguous range of ZONE_DEVICE pages of one `dev_pagemap`, reserved from the
/// pagemap's allocator and made live page by page.
///
/// Each page is in one of three states: *unused* (free, refcount zero, owned by this
/// object and used by no one), *live* (made live by [`DevicePages::make_live`]; this
/// object owns one reference) or *gone* (given back or released: not this object's any
/// more).
///
/// # Invariants
///
/// - `[addr, addr + count * PAGE_SIZE)` is the kernel direct mapping of `count`
///   ZONE_DEVICE pages of the pagemap whose `percpu_ref` is `pgmap_ref`, allocated
///   from `alloc`;
/// - this object holds one reference on `pgmap_ref`, dropped last in `drop`;
/// - a page whose bit in `live` is set is live and this object owns one reference on
///   it; a page whose bits in `live` and `gone` are both clear is unused; a page whose
///   bit in `gone` is set is gone; no page has both bits set.
pub struct DevicePages<A: FreeRange> {
    addr: usize,
    count: usize,
    live: Bits,
    gone: Bits,
    pgmap_ref: NonNull<bindings::percpu_ref>,
    alloc: A,
}

// SAFETY: Page and pagemap references may be dropped from any thread; the pagemap's
// `folio_free` runs in whatever context drops a page's last reference, and `A` is
// `Send`.
unsafe impl<A: FreeRange + Send> Send for DevicePages<A> {}
// SAFETY: `&DevicePages` only reads the bitmaps and gives out borrowed pages, which are
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
    ///   reference on `pgmap_ref`;
    /// - the caller owns the pagemap's `zone_device_data` (it created the pagemap, or
    ///   is the part of the kernel that did).
    pub unsafe fn new(
        addr: usize,
        count: usize,
        pgmap_ref: *mut bindings::percpu_ref,
        alloc: A,
        flags: Flags,
    ) -> Result<Self> {
        let live = Bits::new(count, flags)?;
        let gone = Bits::new(count, flags)?;
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
        // INVARIANT: the range is ours and free: every page is unused; we hold the
        // pagemap reference just taken.
        Ok(Self {
            addr,
            count,
            live,
            gone,
            pgmap_ref,
            alloc,
        })
    }

    fn page_addr(&self, i: usize) -> usize {
        self.addr + i * PAGE_SIZE
    }

    fn page_at(&self, i: usize) -> NonNull<bindings::page> {
        // SAFETY: `virt_to_page` is arithmetic on a direct-mapping address.
        let p = unsafe { bindings::virt_to_page(self.page_addr(i) as *const _) };
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

    /// Whether page `i` has been made live (and not released since).
    pub fn is_live(&self, i: usize) -> bool {
        i < self.count && self.live.get(i)
    }

    /// Whether any page among `start..end` is live.
    pub fn any_live_in(&self, start: usize, end: usize) -> bool {
        let end = end.min(self.count);
        self.live.next_set(start, end) < end
    }

    /// The index of page `i` in its pagemap (pages from the start of the pagemap's
    /// first range); `None` if `i` is out of range.
    pub fn pgmap_index(&self, i: usize) -> Option<usize> {
        if i >= self.count {
            return None;
        }
        // SAFETY: `page_at` returns the valid struct page of a page of the range, whose
        // pagemap is alive (we hold a reference on it).
        Some(unsafe { bindings::zone_device_pgmap_index(self.page_at(i).as_ptr()) })
    }

    /// Moves pages `start..end` (unused and live ones, each in its state) into a new
    /// object, whose state lives in `mem`; they are gone from `self` afterwards. Does not
    /// sleep. Gives `mem` back, leaving `self` as it was, for a range that is empty or
    /// out of bounds, or that `mem` was not made for.
    pub fn split_off(
        &mut self,
        start: usize,
        end: usize,
        mem: SplitState,
    ) -> core::result::Result<Self, SplitState>
    where
        A: Clone,
    {
        if start >= end || end > self.count || mem.count != end - start {
            return Err(mem);
        }
        let count = end - start;
        let SplitState {
            mut live, mut gone, ..
        } = mem;
        for i in start..end {
            if self.gone.get(i) {
                gone.set(i - start);
            } else {
                if self.live.get(i) {
                    live.set(i - start);
                    self.live.clear(i);
                }
                // INVARIANT: page `i` (unused or live, with our reference) now belongs
                // to the new object.
                self.gone.set(i);
            }
        }
        // SAFETY: We hold a reference on the pagemap, so it is alive; the new object
        // owns the one taken here.
        unsafe { bindings::percpu_ref_get(self.pgmap_ref.as_ptr()) };
        // INVARIANT: the pages moved keep their state: the new object owns the unused
        // ones and our references on the live ones, and a pagemap reference.
        Ok(Self {
            addr: self.page_addr(start),
            count,
            live,
            gone,
            pgmap_ref: self.pgmap_ref,
            alloc: self.alloc.clone(),
        })
    }

    /// Number of live pages.
    pub fn live_count(&self) -> usize {
        self.live.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Sets the owner tag of page `i` if it is unused or live: a value the owner finds
    /// again with [`DevicePages::zero_untagged`] when it reserves the page later, if
    /// nothing that allocated the page meanwhile reset it. Zero marks nothing.
    pub fn set_tag(&mut self, i: usize, tag: usize) {
        if i >= self.count || self.gone.get(i) {
            return;
        }
        // SAFETY: The page is ours and valid; `zone_device_data` belongs to the
        // pagemap's owner (the safety requirement of `new`).
        unsafe { bindings::page_set_zone_device_data(self.page_at(i).as_ptr(), tag as *mut _) };
    }

    /// Makes page `i` live if it is unused; returns whether it was made live now.
    ///
    /// A page made live now holds whatever the device memory held: the caller decides
    /// whether it must be cleared (see [`DevicePages::zero`]) before anyone else sees
    /// it. Returns `None` for an index out of range and for a page that is gone.
    pub fn make_live(&mut self, i: usize) -> Option<bool> {
        if i >= self.count || self.gone.get(i) {
            return None;
        }
        if self.live.get(i) {
            return Some(false);
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
        self.live.set(i);
        Some(true)
    }

    /// Gives the unused pages among `start..end` back to the allocator now; live pages
    /// stay. They are gone afterwards: they can no longer be made live.
    ///
    /// Such pages were never handed to anyone, so nothing (no page table entry, no
    /// lockless page table walker) can refer to them: unlike live pages, they need no
    /// grace period before they are reused.
    pub fn give_back(&mut self, start: usize, end: usize) {
        let end = end.min(self.count);
        let mut i = start;
        while i < end {
            // The next unused page: neither live nor gone.
            while i < end && (self.live.get(i) || self.gone.get(i)) {
                i += 1;
            }
            let mut j = i;
            while j < end && !self.live.get(j) && !self.gone.get(j) {
                j += 1;
            }
            if i == j {
                break;
            }
            // SAFETY: By the type invariant pages `i..j` are free, came from `alloc`
            // and are used by no one; we hold the pagemap reference.
            unsafe {
                self.alloc
                    .free_range(self.page_addr(i), (j - i) * PAGE_SIZE)
            };
            for k in i..j {
                // INVARIANT: page `k` has just been given back.
                self.gone.set(k);
            }
            i = j;
        }
    }

    /// Gives every unused page back; see [`DevicePages::give_back`].
    pub fn give_back_unused(&mut self) {
        self.give_back(0, self.count);
    }

    /// Releases the live pages among `start..end`: for each, calls `f` with the page
    /// while our reference is still held, then drops that reference. Returns the
    /// number of pages released. Sleeps (reschedules between pages).
    ///
    /// A page whose reference was the last goes back to the allocator then; one that is
    /// still referenced (pinned for I/O, say) goes back when its last reference goes.
    pub fn release_live(
        &mut self,
        start: usize,
        end: usize,
        mut f: impl FnMut(&mut LivePage<'_>),
    ) -> usize {
        let end = end.min(self.count);
        let mut released = 0;
        let mut i = self.live.next_set(start, end);
        while i < end {
            let mut page = LivePage {
                page: self.page_at(i),
                addr: self.page_addr(i),
                _p: core::marker::PhantomData,
            };
            f(&mut page);
            // INVARIANT: our reference is dropped just below; the page is gone.
            self.live.clear(i);
            self.gone.set(i);
            // SAFETY: By the type invariant we owned one reference on the live page; the
            // last `put_page` hands it to the pagemap's `folio_free`.
            unsafe { bindings::put_page(page.page.as_ptr()) };
            released += 1;
            // SAFETY: Sleeping is allowed here (documented).
            unsafe { bindings::zone_device_cond_resched() };
            i = self.live.next_set(i + 1, end);
        }
        released
    }

    /// A reference of its own on live page `i`; `None` if it is out of range or not
    /// live.
    pub fn get(&self, i: usize) -> Option<DevicePageRef> {
        if !self.is_live(i) {
            return None;
        }
        let page = self.page_at(i);
        // SAFETY: By the type invariant page `i` is live and we hold a reference on it,
        // so taking another one is allowed.
        unsafe { bindings::zone_device_get_page(page.as_ptr()) };
        // INVARIANT: the reference just taken is the new object's.
        Some(DevicePageRef { page })
    }

    /// Fills page `i` with zeroes through the kernel mapping, if it is unused or
    /// live.
    ///
    /// Device memory may be uncached and, in a virtual machine, is often an emulated
    /// MMIO region where each access traps: the page is written with aligned 8-byte
    /// stores, never with a `memset` that may store one byte at a time.
    pub fn zero(&mut self, i: usize) {
        if i >= self.count || self.gone.get(i) {
            return;
        }
        // SAFETY: By the type invariant page `i` is ours (unused: no one else uses it;
        // live: we hold a reference) and mapped at `page_addr(i)`.
        unsafe { zero_page_at(self.page_addr(i)) };
    }

    /// Zeroes the unused or live pages among `start..end` whose tag is not `tag`, and
    /// tags them `tag`. Finding them costs one pass over the range's struct pages, in
    /// C. Sleeps; stops with `EINTR` if the current task gets a fatal signal (the pages
    /// zeroed so far are tagged).
    pub fn zero_untagged(&mut self, start: usize, end: usize, tag: usize) -> Result {
        let end = end.min(self.count);
        if start >= end {
            return Ok(());
        }
        let first = self.page_at(0);
        let mut i = start;
        loop {
            // SAFETY: Pages `0..end` of the range are valid struct pages of one pagemap
            // (contiguous pfns); `zone_device_data` belongs to the pagemap's owner.
            i = unsafe {
                bindings::zone_device_next_untagged(first.as_ptr(), i, end, tag as *mut _)
            };
            if i >= end {
                return Ok(());
            }
            if !self.gone.get(i) {
                // SAFETY: A helper reading `current`'s signal state.
                if unsafe { bindings::zone_device_fatal_signal_pending() } {
                    return Err(EINTR);
                }
                self.zero(i);
                self.set_tag(i, tag);
                // SAFETY: Sleeping is allowed here (documented).
                unsafe { bindings::zone_device_cond_resched() };
            }
            i += 1;
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
        let mut i = self.live.next_set(0, self.count);
        while i < self.count {
            // SAFETY: By the type invariant we own one reference on the live page;
            // the last `put_page` hands it to the pagemap's `folio_free`.
            unsafe { bindings::put_page(self.page_at(i).as_ptr()) };
            i = self.live.next_set(i + 1, self.count);
        }
        // SAFETY: The reference taken in `new`; nothing here is used after it.
        unsafe { bindings::percpu_ref_put(self.pgmap_ref.as_ptr()) };
    }
}

#[cfg(CONFIG_RUST_P2PDMA_KUNIT_TEST)]
#[macros::kunit_tests(rust_kernel_zone_device)]
mod tests {
    use super::*;
    use crate::alloc::flags::GFP_KERNEL;

    /// Pages of 4 KiB in 64 GiB: the page state of a whole 64 GiB BAR.
    const PAGES_64G: usize = (64usize << 30) / 4096;

    #[test]
    fn bitmap_of_a_64g_range() -> Result {
        // 2 MiB of bits: beyond what kmalloc gives, so this needs vmalloc.
        let mut b = Bits::new(PAGES_64G, GFP_KERNEL)?;
        assert_eq!(b.next_set(0, PAGES_64G), PAGES_64G);
        b.set(PAGES_64G - 1);
        b.set(12_345_678);
        assert_eq!(b.next_set(0, PAGES_64G), 12_345_678);
        assert_eq!(b.next_set(12_345_679, PAGES_64G), PAGES_64G - 1);
        b.clear(12_345_678);
        assert_eq!(b.next_set(0, PAGES_64G), PAGES_64G - 1);
        assert!(!b.get(0));
        Ok(())
    }

    #[test]
    fn next_set_stays_in_range() -> Result {
        let mut b = Bits::new(200, GFP_KERNEL)?;
        for i in [0, 63, 64, 130, 199] {
            b.set(i);
        }
        let mut found = KVVec::new();
        let mut i = b.next_set(0, 200);
        while i < 200 {
            found.push(i, GFP_KERNEL)?;
            i = b.next_set(i + 1, 200);
        }
        assert_eq!(&found[..], &[0, 63, 64, 130, 199]);
        // A range that ends before the next set bit, and one inside a word.
        assert_eq!(b.next_set(65, 130), 130);
        assert_eq!(b.next_set(1, 63), 63);
        assert_eq!(b.next_set(131, 199), 199);
        Ok(())
    }

    #[test]
    fn many_ranges_released_one_by_one() -> Result {
        // What releasing many parts of one 64 GiB reservation walks: only set bits.
        let mut live = Bits::new(PAGES_64G, GFP_KERNEL)?;
        let mut n = 0;
        let mut i = 0;
        while i < PAGES_64G {
            live.set(i);
            n += 1;
            i += 4099;
        }
        let mut released = 0;
        let mut start = 0;
        while start < PAGES_64G {
            let end = PAGES_64G.min(start + 512 * 1024);
            let mut j = live.next_set(start, end);
            while j < end {
                live.clear(j);
                released += 1;
                j = live.next_set(j + 1, end);
            }
            start = end;
        }
        assert_eq!(released, n);
        assert_eq!(live.next_set(0, PAGES_64G), PAGES_64G);
        Ok(())
    }
}
