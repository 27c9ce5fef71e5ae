// SPDX-License-Identifier: GPL-2.0

//! VMA operations: per-VMA data, `open`/`close` and page faults.
//!
//! C header: [`include/linux/mm.h`](srctree/include/linux/mm.h)
//!
//! A driver that maps memory lazily sets a [`VmOperations`] table and per-VMA data on
//! a new VMA from its `mmap` handler ([`VmaNew::set_vm_ops`]). The data is an owned
//! [`ForeignOwnable`] (typically an [`Arc`](crate::sync::Arc)) kept in
//! `vm_private_data`:
//!
//! - when the VMA is copied (split by a partial `munmap`/`mprotect`, duplicated by
//!   `fork`, moved by `mremap`), `open` makes the copy's data from the original's;
//! - when a VMA goes away, `close` consumes its data, and can find which part of its
//!   range of the file no other VMA of the same mapping still maps
//!   ([`ClosingVma::for_each_unmapped_part`]);
//! - `fault` gets the data borrowed and a [`VmFault`], which can insert a page;
//! - `huge_fault`, if implemented, gets a [`HugeFault`] where the mm core would map a
//!   whole PMD, and can insert a PMD-sized folio of device memory there.
//!
//! Pages inserted with [`VmFault::insert_page`] are normal refcounted pages behind a
//! normal PTE, and folios inserted with [`HugeFault::insert_folio_pmd`] normal
//! refcounted folios behind a normal PMD: the VMA is neither `VM_MIXEDMAP` nor
//! `VM_PFNMAP`, so GUP and GUP-fast see ordinary pages, and fork copies no page table
//! entries (the child faults its own).

use super::{
    virt::{VmaNew, VmaRef},
    zone_device::{DevicePageRef, PMD_ORDER},
};
use crate::{bindings, page::Page, prelude::*, types::ForeignOwnable, types::Opaque};
use core::marker::PhantomData;

/// The result of a fault handler (`vm_fault_t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmFaultResult(bindings::vm_fault_t);

impl VmFaultResult {
    /// The handler installed the PTE itself (`VM_FAULT_NOPAGE`).
    pub const NOPAGE: Self = Self(bindings::vm_fault_reason_VM_FAULT_NOPAGE);
    /// Deliver `SIGBUS` to the faulting task (`VM_FAULT_SIGBUS`).
    pub const SIGBUS: Self = Self(bindings::vm_fault_reason_VM_FAULT_SIGBUS);
    /// Out of memory (`VM_FAULT_OOM`).
    pub const OOM: Self = Self(bindings::vm_fault_reason_VM_FAULT_OOM);
    /// A huge fault cannot be served at this size: the mm core falls back to smaller
    /// page table entries (`VM_FAULT_FALLBACK`).
    pub const FALLBACK: Self = Self(bindings::vm_fault_reason_VM_FAULT_FALLBACK);

    /// The raw `vm_fault_t`.
    pub fn as_raw(self) -> bindings::vm_fault_t {
        self.0
    }
}

/// A page fault being handled, `struct vm_fault`.
///
/// Only available inside [`VmOperations::fault`], where the faulting VMA is locked
/// (by the mmap lock or its per-VMA lock).
///
/// # Invariants
///
/// The fault is in progress: `vmf->vma` is valid and locked for the lifetime of the
/// reference.
#[repr(transparent)]
pub struct VmFault(Opaque<bindings::vm_fault>);

impl VmFault {
    /// # Safety
    ///
    /// `ptr` must be the `vm_fault` of a fault being handled, valid for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::vm_fault) -> &'a Self {
        // SAFETY: Transparent wrapper; validity guaranteed by the caller.
        unsafe { &*ptr.cast() }
    }

    fn raw(&self) -> &bindings::vm_fault {
        // SAFETY: By the type invariant the structure is valid; the fields read here are
        // not written by others while the fault is being handled.
        unsafe { &*self.0.get() }
    }

    /// The faulting VMA.
    pub fn vma(&self) -> &VmaRef {
        // SAFETY: By the type invariant the VMA is valid and locked while `self` lives.
        unsafe { VmaRef::from_raw(self.raw().__bindgen_anon_1.vma) }
    }

    /// The page-aligned faulting user address.
    pub fn address(&self) -> usize {
        self.raw().__bindgen_anon_1.address
    }

    /// The faulting page's offset in the mapping, in pages (includes `vm_pgoff`).
    pub fn pgoff(&self) -> usize {
        self.raw().__bindgen_anon_1.pgoff
    }

    /// Whether the access is a write.
    pub fn is_write(&self) -> bool {
        self.raw().flags & bindings::fault_flag_FAULT_FLAG_WRITE != 0
    }

    /// Maps `page` at the faulting address with the VMA's protection, writable (and
    /// dirty) if `self` is a write fault, with `vmf_insert_page_mkwrite()`.
    ///
    /// The page table entry takes its own reference on `page`. Returns
    /// [`VmFaultResult::NOPAGE`] on success or when another thread mapped the address
    /// first; [`VmFaultResult::OOM`] or [`VmFaultResult::SIGBUS`] otherwise.
    ///
    /// Only for shared mappings: in a private (copy-on-write) mapping a write would go
    /// to `page` itself instead of a private copy, so there this returns
    /// [`VmFaultResult::SIGBUS`] and maps nothing; the same in a `VM_PFNMAP` VMA, whose
    /// page table entries the mm core zaps without dropping page references.
    pub fn insert_page(&self, page: &Page) -> VmFaultResult {
        use crate::mm::virt::flags;
        let vm_flags = self.vma().flags();
        // A shared mapping of a file opened read-only lacks `VM_SHARED` but also
        // `VM_MAYWRITE`: `VM_MAYSHARE` is what every shared mapping has.
        if vm_flags & flags::MAYSHARE == 0 || vm_flags & flags::PFNMAP != 0 {
            return VmFaultResult::SIGBUS;
        }
        // SAFETY: By the type invariant the fault is in progress; `page` is a valid,
        // live page (`vmf_insert_page_mkwrite` refuses anonymous and typed pages).
        VmFaultResult(unsafe {
            bindings::vmf_insert_page_mkwrite(self.0.get(), page.as_ptr(), self.is_write())
        })
    }
}

/// A page fault that the mm core would serve with a PMD (or larger) entry,
/// `struct vm_fault` passed to `huge_fault`.
///
/// Only available inside [`VmOperations::huge_fault`]. What a [`VmFault`] tells is
/// available through [`HugeFault::fault`]; single pages are inserted by
/// [`VmOperations::fault`] after a [`VmFaultResult::FALLBACK`], not here.
///
/// # Invariants
///
/// As for [`VmFault`]; `order` is the order of the entry the mm core asks for.
pub struct HugeFault<'a> {
    vmf: &'a VmFault,
    order: u32,
}

impl HugeFault<'_> {
    /// The fault.
    pub fn fault(&self) -> &VmFault {
        self.vmf
    }

    /// The order of the page table entry asked for: [`PMD_ORDER`] for a PMD.
    pub fn order(&self) -> u32 {
        self.order
    }

    /// The first user address of the PMD-sized range that the faulting address is in.
    pub fn pmd_address(&self) -> usize {
        self.vmf.address() & !((crate::page::PAGE_SIZE << PMD_ORDER) - 1)
    }

    /// The offset in the mapping, in pages, of [`HugeFault::pmd_address`].
    pub fn pmd_pgoff(&self) -> usize {
        self.vmf.pgoff() - ((self.vmf.address() - self.pmd_address()) >> crate::page::PAGE_SHIFT)
    }

    /// Whether a PMD can map the faulting address here: a PMD is asked for, the
    /// PMD-sized range is inside the VMA, and the VMA's file offset is aligned like
    /// its addresses (`thp_vma_suitable_order()`).
    pub fn pmd_suitable(&self) -> bool {
        use crate::page::PAGE_SHIFT;
        let vma = self.vmf.vma();
        let start = self.pmd_address();
        let pages = 1usize << PMD_ORDER;
        // The VMA's `vm_pgoff`: the offset of its first page.
        let vm_pgoff = self.vmf.pgoff() - ((self.vmf.address() - vma.start()) >> PAGE_SHIFT);
        self.order == PMD_ORDER
            && start >= vma.start()
            && start + (pages << PAGE_SHIFT) <= vma.end()
            && (vma.start() >> PAGE_SHIFT).wrapping_sub(vm_pgoff) % pages == 0
    }

    /// Maps `folio`, the first page of a live PMD-sized ZONE_DEVICE folio, with one PMD
    /// entry over [`HugeFault::pmd_address`], with the VMA's protection, writable (and
    /// dirty) if this is a write fault, with `vmf_insert_folio_pmd()`.
    ///
    /// The PMD takes its own reference on the folio. Returns
    /// [`VmFaultResult::NOPAGE`] on success or when another thread mapped the range
    /// first, and [`VmFaultResult::FALLBACK`] (nothing mapped: the mm core faults in
    /// single pages) if no PMD can map the address (see [`HugeFault::pmd_suitable`])
    /// or `folio` is not the first page of a PMD-sized folio of device memory.
    ///
    /// Only for shared mappings, as [`VmFault::insert_page`]: returns
    /// [`VmFaultResult::SIGBUS`] in a private one. Returns [`VmFaultResult::FALLBACK`]
    /// in a `VM_MIXEDMAP` or `VM_PFNMAP` VMA, whose PMDs the mm core splits without
    /// dropping the folio's reference, and where a page table is below the PMD
    /// already.
    pub fn insert_folio_pmd(&self, folio: &DevicePageRef) -> VmFaultResult {
        use crate::mm::virt::flags;
        let vm_flags = self.vmf.vma().flags();
        if vm_flags & flags::MAYSHARE == 0 {
            return VmFaultResult::SIGBUS;
        }
        if vm_flags & (flags::MIXEDMAP | flags::PFNMAP) != 0 {
            return VmFaultResult::FALLBACK;
        }
        let page = folio.page();
        // SAFETY: `page` is valid: `folio` holds a reference on it.
        let head = unsafe { bindings::zone_device_is_folio_head(page.as_ptr(), PMD_ORDER) };
        if !self.pmd_suitable() || !head {
            return VmFaultResult::FALLBACK;
        }
        // SAFETY: By the type invariant the fault is in progress and asks for a PMD
        // (`vmf->pmd` is the PMD to fill); the PMD-sized range is inside the VMA, which
        // is a shared one. `page` is the first page of a live, non-anonymous ZONE_DEVICE
        // folio of PMD order, aligned as every such folio; `folio` holds a reference on
        // it for the call, and the PMD takes its own.
        VmFaultResult(unsafe {
            bindings::zone_device_insert_folio_pmd(
                self.vmf.0.get(),
                page.as_ptr(),
                self.vmf.is_write(),
            )
        })
    }
}

/// A VMA whose `close` is running: its page table entries are gone and it is no longer
/// linked into its file's reverse map.
///
/// # Invariants
///
/// `vma` is valid, and `data` was its `vm_private_data`, for the lifetime of the
/// reference.
pub struct ClosingVma {
    vma: *mut bindings::vm_area_struct,
    data: *mut core::ffi::c_void,
}

impl ClosingVma {
    fn raw(&self) -> &bindings::vm_area_struct {
        // SAFETY: By the type invariant the VMA is valid; it is being closed, so no one
        // else changes it.
        unsafe { &*self.vma }
    }

    /// The first user address.
    pub fn start(&self) -> usize {
        // SAFETY: The union holds the VMA's range while it is in use (it holds an RCU
        // head only once the VMA is freed).
        unsafe { self.raw().__bindgen_anon_1.__bindgen_anon_1.vm_start }
    }

    /// The user address just past the VMA.
    pub fn end(&self) -> usize {
        // SAFETY: As in `start`.
        unsafe { self.raw().__bindgen_anon_1.__bindgen_anon_1.vm_end }
    }

    /// The VMA's offset in its file, in pages.
    pub fn pgoff(&self) -> usize {
        self.raw().vm_pgoff
    }

    /// Calls `f(first, end)` for each part `[first, end)` (in pages of the file) of this
    /// VMA's range of its file, widened at both ends to a multiple of `align` pages (1:
    /// not widened), that no other VMA with the same operations and the same data (a
    /// part split off it, a copy made by `fork`, the destination of an `mremap`) maps
    /// any more, in increasing order. Widening finds the unmapped neighbours of the
    /// range too: what a driver that hands out blocks of `align` pages can give back.
    ///
    /// "The same data" is the same `vm_private_data` pointer: this finds the other VMAs
    /// of a mapping when [`VmOperations::open`] shares the data (an `Arc`, whose copies
    /// all have the same foreign pointer), not when it makes a new allocation.
    ///
    /// Such a part can be given up when this returns, if nothing else can map it: the
    /// page table entries this VMA had are gone, lockless page table walkers aside.
    /// Takes the file's `i_mmap_rwsem` for reading, not while calling `f`.
    pub fn for_each_unmapped_part(&self, align: usize, mut f: impl FnMut(usize, usize)) {
        const BATCH: usize = 16;
        let vma = self.raw();
        let file = vma.vm_file;
        let align = align.max(1);
        let pages = (self.end() - self.start()) >> crate::page::PAGE_SHIFT;
        let first = self.pgoff() - self.pgoff() % align;
        let Some(last) = (self.pgoff() + pages)
            .checked_next_multiple_of(align)
            .filter(|_| pages != 0)
        else {
            return;
        };
        if file.is_null() {
            return;
        }
        // SAFETY: The VMA holds a reference on its file.
        let mapping = unsafe { (*file).f_mapping };
        let mut from = first;
        while from < last {
            let mut gaps = [(0usize, 0usize); BATCH];
            let mut n = 0;
            let mut cursor = from;
            let mut full = false;
            // SAFETY: `mapping` is the address_space of a file the VMA holds a reference
            // on; the interval tree is walked under its `i_mmap_rwsem`, which keeps the
            // VMAs in it and their ranges stable.
            unsafe {
                bindings::i_mmap_lock_read(mapping);
                let mut other = bindings::mapping_rmap_tree_iter_first(mapping, from, last - 1);
                while !other.is_null() {
                    let o = &*other;
                    if o.vm_ops == self.ops_of_self() && o.vm_private_data == self.data {
                        let start = o.vm_pgoff;
                        let end = start
                            + ((o.__bindgen_anon_1.__bindgen_anon_1.vm_end
                                - o.__bindgen_anon_1.__bindgen_anon_1.vm_start)
                                >> crate::page::PAGE_SHIFT);
                        if start > cursor {
                            if n == BATCH {
                                full = true;
                                break;
                            }
                            gaps[n] = (cursor, start.min(last));
                            n += 1;
                        }
                        cursor = cursor.max(end);
                        if cursor >= last {
                            break;
                        }
                    }
                    other = bindings::mapping_rmap_tree_iter_next(other, from, last - 1);
                }
                bindings::i_mmap_unlock_read(mapping);
            }
            if !full && cursor < last {
                if n == BATCH {
                    full = true;
                } else {
                    gaps[n] = (cursor, last);
                    n += 1;
                }
            }
            for &(a, b) in &gaps[..n] {
                f(a, b);
            }
            from = match (full, n) {
                // Look again from the end of the last part found.
                (true, n) if n > 0 => gaps[n - 1].1,
                _ => last,
            };
        }
    }

    fn ops_of_self(&self) -> *const bindings::vm_operations_struct {
        self.raw().vm_ops
    }
}

/// Operations on the VMAs of a mapping.
#[vtable]
pub trait VmOperations: Sized + 'static {
    /// The data of one VMA, stored in `vm_private_data`.
    type Data: ForeignOwnable + Send + Sync;

    /// Makes the data of a copy of a VMA (split, fork, mremap) from the original's.
    fn open(data: <Self::Data as ForeignOwnable>::Borrowed<'_>) -> Self::Data;

    /// A VMA goes away; its data is dropped when this returns.
    fn close(data: Self::Data, _vma: &ClosingVma) {
        drop(data);
    }

    /// Handles a page fault in the VMA.
    fn fault(data: <Self::Data as ForeignOwnable>::Borrowed<'_>, vmf: &VmFault) -> VmFaultResult;

    /// Handles a page fault that the mm core would serve with a PMD (or larger) entry:
    /// in a VMA that allows transparent huge pages (`VM_HUGEPAGE`, see
    /// [`VmaNew::set_hugepage`], with THP set to `madvise`, or THP set to `always`)
    /// where no page table exists yet below the PMD, or on a write to a read-only
    /// PMD. Return [`VmFaultResult::FALLBACK`] to have the address served by
    /// [`VmOperations::fault`] instead.
    fn huge_fault(
        _data: <Self::Data as ForeignOwnable>::Borrowed<'_>,
        _vmf: &HugeFault<'_>,
    ) -> VmFaultResult {
        build_error!(crate::error::VTABLE_DEFAULT_ERROR)
    }
}

struct Adapter<T: VmOperations>(PhantomData<T>);

impl<T: VmOperations> Adapter<T> {
    const VTABLE: bindings::vm_operations_struct = bindings::vm_operations_struct {
        open: Some(Self::open),
        close: Some(Self::close),
        fault: Some(Self::fault),
        huge_fault: if T::HAS_HUGE_FAULT {
            Some(Self::huge_fault)
        } else {
            None
        },
        ..pin_init::zeroed()
    };

    const fn vtable() -> &'static bindings::vm_operations_struct {
        &Self::VTABLE
    }

    /// # Safety
    ///
    /// `vma` is a new copy of a VMA whose `vm_ops` are `VTABLE`, so its
    /// `vm_private_data` is the original's, produced by `T::Data::into_foreign`.
    unsafe extern "C" fn open(vma: *mut bindings::vm_area_struct) {
        // SAFETY: Per the function's safety requirement the pointer came from
        // `into_foreign` and the original VMA (which owns it) is still alive.
        let data = unsafe { T::Data::borrow((*vma).vm_private_data) };
        let copy = T::open(data);
        // SAFETY: `vma` is valid; the copy takes ownership of the new data.
        unsafe { (*vma).vm_private_data = copy.into_foreign() };
    }

    /// # Safety
    ///
    /// `vma` is going away; its `vm_private_data` was produced by `into_foreign` and is
    /// owned by it.
    unsafe extern "C" fn close(vma: *mut bindings::vm_area_struct) {
        // SAFETY: `vma` is valid.
        let ptr = unsafe { (*vma).vm_private_data };
        // SAFETY: Per the safety requirement the VMA owns the data; it is taken back
        // exactly once, here.
        let data = unsafe { T::Data::from_foreign(ptr) };
        // SAFETY: `vma` is valid.
        unsafe { (*vma).vm_private_data = core::ptr::null_mut() };
        // INVARIANT: `vma` is valid for the call, and `ptr` was its data. The mm core
        // calls `close` after zapping the VMA's page table entries and unlinking it
        // from its file's reverse map (`remove_vma()`, `vms_clean_up_area()`), or for a
        // VMA copy that was never linked (`copy_vma()` failing).
        let closing = ClosingVma { vma, data: ptr };
        T::close(data, &closing);
    }

    /// # Safety
    ///
    /// Called by the fault handler for a VMA with these `vm_ops`.
    unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: A fault is in progress on a VMA with these ops.
        let vmf = unsafe { VmFault::from_raw(vmf) };
        // SAFETY: The VMA owns its data and is locked for the fault, so the data is not
        // released (`close`) while borrowed.
        let data = unsafe { T::Data::borrow((*vmf.vma().as_ptr()).vm_private_data) };
        T::fault(data, vmf).as_raw()
    }

    /// # Safety
    ///
    /// Called by the huge fault handler for a VMA with these `vm_ops`.
    unsafe extern "C" fn huge_fault(
        vmf: *mut bindings::vm_fault,
        order: core::ffi::c_uint,
    ) -> bindings::vm_fault_t {
        // SAFETY: A fault is in progress on a VMA with these ops.
        let vmf = unsafe { VmFault::from_raw(vmf) };
        // SAFETY: As in `fault`.
        let data = unsafe { T::Data::borrow((*vmf.vma().as_ptr()).vm_private_data) };
        // INVARIANT: the mm core asks for an entry of this order.
        T::huge_fault(data, &HugeFault { vmf, order }).as_raw()
    }
}

impl VmaNew {
    /// Sets the VMA's operations to `T` and its data to `data`.
    ///
    /// Call this last in an `mmap` handler: if the handler fails afterwards, the mm
    /// core replaces the VMA's operations with dummy ones and never calls `close`, so
    /// `data` would never be dropped.
    pub fn set_vm_ops<T: VmOperations>(&self, data: T::Data) {
        let ptr = data.into_foreign();
        // SAFETY: The VMA is being set up by its `mmap` handler and not yet visible to
        // other threads. `VTABLE` is `'static`; `ptr` is owned by the VMA from now on
        // and released by `Adapter::close`.
        unsafe {
            (*self.as_ptr()).vm_private_data = ptr;
            (*self.as_ptr()).vm_ops = Adapter::<T>::vtable();
        }
    }

    /// Marks the VMA for transparent huge pages (`VM_HUGEPAGE`, as `MADV_HUGEPAGE`
    /// does): with THP set to `madvise`, faults in it reach
    /// [`VmOperations::huge_fault`]. Userspace can take it back with
    /// `MADV_NOHUGEPAGE`.
    pub fn set_hugepage(&self) {
        // SAFETY: The VMA is being set up by its `mmap` handler and not yet visible to
        // other threads (`VmaNew` is `!Sync`); `VM_HUGEPAGE` is a valid flag on any VMA.
        unsafe { (*self.as_ptr()).__bindgen_anon_2.vm_flags |= crate::mm::virt::flags::HUGEPAGE };
    }

    /// Sets the VMA's offset in its file, in pages: where in the object the mmap handler
    /// maps the VMA starts. Faults report offsets from it ([`VmFault::pgoff`]), and the
    /// file's reverse map files the VMA under it. Fails with `EOVERFLOW` if the VMA's
    /// range of the file would overflow.
    pub fn set_pgoff(&self, pgoff: usize) -> Result {
        let pages = (self.end() - self.start()) >> crate::page::PAGE_SHIFT;
        pgoff.checked_add(pages).ok_or(EOVERFLOW)?;
        // SAFETY: The VMA is being set up by its `mmap` handler and is not linked into
        // its file's reverse map yet, which happens with the final `vm_pgoff` after the
        // handler returns.
        unsafe { (*self.as_ptr()).vm_pgoff = pgoff };
        Ok(())
    }

    /// Moves the VMA onto `file`, as dma-buf does: the VMA takes a reference on `file`
    /// and drops the one on its current file, and is linked into `file`'s
    /// address_space once the `mmap` handler returns, so that
    /// `unmap_mapping_range()` on that address_space reaches it.
    pub fn set_file(&self, file: &crate::fs::File) {
        // SAFETY: The VMA is being set up by its `mmap` handler; `vma_set_file` takes
        // its own reference on `file`.
        unsafe { bindings::vma_set_file(self.as_ptr(), file.as_ptr()) };
    }
}
