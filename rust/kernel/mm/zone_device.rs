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
//! A range can also hand out large folios: `1 << order` pages of it that are aligned
//! in physical memory and all unused can become one live folio
//! ([`DevicePages::make_folio_live`]), which a fault handler can map with one PMD entry
//! ([`HugeFault::insert_folio_pmd`]) or page by page. Its pages are single pages again once the folio
//! is freed (the pagemap's `folio_free` calls `zone_device_folio_split_free()`), so the
//! allocator and its other users only ever see single pages. A large folio's tag is its
//! first page's; the others' hold folio metadata while it is live, and get the first
//! page's tag when it is freed.
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

#[cfg(doc)]
use crate::mm::vm_ops::HugeFault;

/// The order of a folio that one PMD entry maps (2 MiB of 4 KiB pages on x86-64).
pub const PMD_ORDER: u32 = bindings::PMD_ORDER;

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

    fn set_range(&mut self, from: usize, to: usize) {
        for i in from..to {
            self.set(i);
        }
    }

    fn clear_range(&mut self, from: usize, to: usize) {
        for i in from..to {
            self.clear(i);
        }
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
///
/// A large folio is released as one: the page is its first, and [`LivePage::zero`]
/// and [`LivePage::set_tag`] act on the whole folio.
pub struct LivePage<'a> {
    page: NonNull<bindings::page>,
    addr: usize,
    pages: usize,
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

    /// Number of pages: 1, or those of a large folio.
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Fills the page (every page of a large folio) with zeroes; see
    /// [`DevicePages::zero`].
    pub fn zero(&mut self) {
        for i in 0..self.pages {
            // SAFETY: The pages are ours (we hold a reference) and mapped from `addr` on
            // in the kernel's direct map.
            unsafe { zero_page_at(self.addr + i * PAGE_SIZE) };
            if i % 64 == 63 {
                // SAFETY: Releasing may sleep (see `DevicePages::release_live`).
                unsafe { bindings::zone_device_cond_resched() };
            }
        }
    }

    /// Sets the page's owner tag (see [`DevicePages::set_tag`]); it stays with the
    /// page while the page is free (with each page of a large folio).
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
    folios: Bits,
    count: usize,
}

impl SplitState {
    /// Memory for the state of `count` pages.
    pub fn new(count: usize, flags: Flags) -> Result<Self> {
        Ok(Self {
            live: Bits::new(count, flags)?,
            gone: Bits::new(count, flags)?,
            // A bit per page: enough for folios of any order.
            folios: Bits::new(count, flags)?,
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
///   bit in `gone` is set is gone; no page has both bits set;
/// - pages `fstart..fend` are whole units of `1 << order` pages aligned in physical
///   memory (none if `order` is zero); a unit whose bit in `folios` is set is one
///   live folio of that order, every page of it has its `live` bit set, and the one
///   reference this object owns is on the folio; pages outside such units are single
///   pages.
pub struct DevicePages<A: FreeRange> {
    addr: usize,
    count: usize,
    live: Bits,
    gone: Bits,
    order: u32,
    fstart: usize,
    fend: usize,
    folios: Bits,
    pgmap_ref: NonNull<bindings::percpu_ref>,
    alloc: A,
}

/// The units of `1 << order` pages, aligned in physical memory, that fit in `count`
/// pages from page frame `pfn` on: `(first, end)` in pages of the range.
fn folio_region(pfn: usize, count: usize, order: u32) -> (usize, usize) {
    if order == 0 {
        return (0, 0);
    }
    let n = 1usize << order;
    let first = pfn.next_multiple_of(n) - pfn;
    if first >= count {
        return (0, 0);
    }
    (first, first + (count - first) / n * n)
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
    /// allocated from `alloc`, with none of them live yet. With `order` above zero,
    /// the units of `1 << order` pages of the range that are aligned to their size in
    /// physical memory can become large folios (see [`DevicePages::make_folio_live`]).
    ///
    /// Fails with `ENODEV` when the pagemap is being torn down (`pgmap_ref` is dead),
    /// `EINVAL` for a null `pgmap_ref` or an `order` above [`PMD_ORDER`], and `ENOMEM`;
    /// the range is then still free and the caller's to give back.
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
    ///   is the part of the kernel that did);
    /// - with `order` above zero, `folio_free` of a large folio calls
    ///   `zone_device_folio_split_free()`, gives its whole range back to `alloc` and
    ///   drops one reference on `pgmap_ref` per page.
    pub unsafe fn new(
        addr: usize,
        count: usize,
        pgmap_ref: *mut bindings::percpu_ref,
        alloc: A,
        order: u32,
        flags: Flags,
    ) -> Result<Self> {
        if order > PMD_ORDER {
            return Err(EINVAL);
        }
        // SAFETY: `virt_to_page` is arithmetic on a direct-mapping address; the page is
        // valid per the safety requirements.
        let pfn = unsafe { bindings::zone_device_pfn(bindings::virt_to_page(addr as *const _)) };
        let (fstart, fend) = folio_region(pfn, count, order);
        let live = Bits::new(count, flags)?;
        let gone = Bits::new(count, flags)?;
        let folios = Bits::new((fend - fstart) >> order, flags)?;
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
        // INVARIANT: the range is ours and free: every page is unused and no unit is a
        // folio; we hold the pagemap reference just taken.
        Ok(Self {
            addr,
            count,
            live,
            gone,
            order,
            fstart,
            fend,
            folios,
            pgmap_ref,
            alloc,
        })
    }

    /// The unit of large folio size that page `i` is in, `(first, end)`, if any.
    fn unit_of(&self, i: usize) -> Option<(usize, usize)> {
        if i < self.fstart || i >= self.fend {
            return None;
        }
        let first = i - ((i - self.fstart) & ((1 << self.order) - 1));
        Some((first, first + (1 << self.order)))
    }

    /// The unit that page `i` is in, if it is a live large folio.
    fn folio_of(&self, i: usize) -> Option<(usize, usize)> {
        let (first, end) = self.unit_of(i)?;
        self.folios
            .get((first - self.fstart) >> self.order)
            .then_some((first, end))
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

    /// `start..end` without the live large folios that cross its ends: what
    /// [`DevicePages::split_off`] can move.
    pub fn splittable(&self, start: usize, end: usize) -> (usize, usize) {
        let end = end.min(self.count);
        if start >= end {
            return (start, start);
        }
        let start = match self.folio_of(start) {
            Some((first, e)) if first < start => e,
            _ => start,
        };
        let end = match self.folio_of(end - 1) {
            Some((first, e)) if e > end => first,
            _ => end,
        };
        (start, end.max(start))
    }

    /// Moves pages `start..end` (unused and live ones, each in its state) into a new
    /// object, whose state lives in `mem`; they are gone from `self` afterwards. Does not
    /// sleep. Gives `mem` back, leaving `self` as it was, for a range that is empty or
    /// out of bounds, that cuts a live large folio (see [`DevicePages::splittable`]),
    /// or that `mem` was not made for.
    pub fn split_off(
        &mut self,
        start: usize,
        end: usize,
        mem: SplitState,
    ) -> core::result::Result<Self, SplitState>
    where
        A: Clone,
    {
        if start >= end
            || end > self.count
            || mem.count != end - start
            || self.splittable(start, end) != (start, end)
        {
            return Err(mem);
        }
        let count = end - start;
        let SplitState {
            mut live,
            mut gone,
            mut folios,
            ..
        } = mem;
        // The new object's units are the units of `self` inside the range: units are
        // aligned in physical memory.
        let (fstart, fend) = if self.order == 0 {
            (0, 0)
        } else {
            // SAFETY: `page_at` returns the valid struct page of a page of the range.
            let pfn = unsafe { bindings::zone_device_pfn(self.page_at(start).as_ptr()) };
            folio_region(pfn, count, self.order)
        };
        let mut u = fstart;
        while u < fend {
            if self.folio_of(start + u).is_some() {
                folios.set((u - fstart) >> self.order);
                self.folios.clear((start + u - self.fstart) >> self.order);
            }
            u += 1 << self.order;
        }
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
        // ones and our references on the live pages and folios (no folio crosses the
        // range's ends), and a pagemap reference.
        Ok(Self {
            addr: self.page_addr(start),
            count,
            live,
            gone,
            order: self.order,
            fstart,
            fend,
            folios,
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
    ///
    /// The tag of a page of a live large folio is the folio's (its first page's).
    pub fn set_tag(&mut self, i: usize, tag: usize) {
        if i >= self.count || self.gone.get(i) {
            return;
        }
        // The other pages of a folio hold its metadata there.
        let i = self.folio_of(i).map_or(i, |(first, _)| first);
        // SAFETY: The page is ours and valid, and not a tail page of a folio;
        // `zone_device_data` belongs to the pagemap's owner (the safety requirement of
        // `new`).
        unsafe { bindings::page_set_zone_device_data(self.page_at(i).as_ptr(), tag as *mut _) };
    }

    /// Makes page `i` live, as a single page, if it is unused; returns whether it was
    /// made live now (`Some(false)` if it is live already, maybe in a large folio).
    ///
    /// A page made live now holds whatever the device memory held: the caller decides
    /// whether it must be cleared (see [`DevicePages::zero`]) before anyone else sees
    /// it. Returns `None` for an index out of range and for a page that is gone. Does
    /// not sleep.
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

    /// Makes the unit of large folio size that starts at page `i` a live folio, if all
    /// its pages are unused; returns whether it was made live now (`Some(false)` if it
    /// is a live folio already). Returns `None` if no such unit starts at page `i`, or
    /// if not all its pages are unused (they can only be made live one by one then).
    /// Does not sleep.
    pub fn make_folio_live(&mut self, i: usize) -> Option<bool> {
        let (first, end) = self.unit_of(i)?;
        if first != i {
            return None;
        }
        if self.folio_of(i).is_some() {
            return Some(false);
        }
        if self.live.next_set(first, end) != end || self.gone.next_set(first, end) != end {
            return None;
        }
        // SAFETY: By the type invariant the unit's pages are free single pages of the
        // pagemap, ours alone, aligned to the folio's size, and the pagemap is alive (we
        // hold a reference on it). The folio takes a pagemap reference per page, which
        // `folio_free` drops (a safety requirement of `new`).
        unsafe { bindings::zone_device_folio_make(self.page_at(first).as_ptr(), self.order) };
        // INVARIANT: the unit is now one live folio with one reference, which is ours.
        self.live.set_range(first, end);
        self.folios.set((first - self.fstart) >> self.order);
        Some(true)
    }

    /// A reference of its own on the live large folio that starts at page `i`, as a
    /// reference on that page; `None` if no live folio starts there.
    pub fn get_folio(&self, i: usize) -> Option<DevicePageRef> {
        match self.folio_of(i) {
            Some((first, _)) if first == i => self.get(i),
            _ => None,
        }
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
    /// while our reference is still held, then drops that reference. A live large
    /// folio with a page in the range is released whole, with one call. Returns the
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
            let (first, last) = match self.folio_of(i) {
                Some((first, last)) => {
                    self.folios.clear((first - self.fstart) >> self.order);
                    (first, last)
                }
                None => (i, i + 1),
            };
            let mut page = LivePage {
                page: self.page_at(first),
                addr: self.page_addr(first),
                pages: last - first,
                _p: core::marker::PhantomData,
            };
            f(&mut page);
            // INVARIANT: our reference is dropped just below; the pages are gone.
            self.live.clear_range(first, last);
            self.gone.set_range(first, last);
            // SAFETY: By the type invariant we owned one reference on the live page or
            // folio; the last `put_page` hands it to the pagemap's `folio_free`.
            unsafe { bindings::put_page(page.page.as_ptr()) };
            released += last - first;
            // SAFETY: Sleeping is allowed here (documented).
            unsafe { bindings::zone_device_cond_resched() };
            i = self.live.next_set(last, end);
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

    /// Zeroes the unused pages among `start..end` whose tag is not `tag`, and tags them
    /// `tag`. Finding them costs one pass over the range's struct pages, in
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
            if !self.gone.get(i) && !self.live.get(i) {
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
            // One reference per live page, or per live folio (on its first page).
            let next = self.folio_of(i).map_or(i + 1, |(_, end)| end);
            // SAFETY: By the type invariant we own one reference on the live page or
            // folio; the last `put_page` hands it to the pagemap's `folio_free`.
            unsafe { bindings::put_page(self.page_at(i).as_ptr()) };
            i = self.live.next_set(next, self.count);
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
    fn folio_units_are_aligned_in_physical_memory() {
        // Order 0: no units.
        assert_eq!(folio_region(3, 2048, 0), (0, 0));
        // An aligned range of 3 units and a half.
        assert_eq!(folio_region(0x80000, 1792, 9), (0, 1536));
        // Unaligned start: the first unit starts at the next 512-page boundary.
        assert_eq!(folio_region(0x80001, 1792, 9), (511, 1535));
        // Too short for a whole unit after the boundary.
        assert_eq!(folio_region(0x80001, 1000, 9), (511, 511));
        assert_eq!(folio_region(0x80001, 300, 9), (0, 0));
        assert_eq!(folio_region(0x80000, 511, 9), (0, 0));
        // A 64 GiB range.
        assert_eq!(folio_region(0x800000, PAGES_64G, 9), (0, PAGES_64G));
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
