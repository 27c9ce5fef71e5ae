// SPDX-License-Identifier: GPL-2.0

//! PCI peer-to-peer DMA memory: registering a BAR of a device as p2pmem, the p2pmem
//! pool of a device, and the hook through which an implementation of
//! `p2pmem/allocate` mmap serves userspace.
//!
//! C header: [`include/linux/pci-p2pdma.h`](srctree/include/linux/pci-p2pdma.h)
//!
//! A driver makes memory of its device p2pmem with
//! [`Device::p2pdma_add_resource`], from probe: the memory gets ZONE_DEVICE struct
//! pages, the device gets `p2pmem/` in sysfs, and everything is torn down when the
//! driver unbinds (user mappings are zapped and the teardown waits for every page).
//!
//! A device that publishes p2pmem (an NVMe controller memory buffer, say) has a
//! genalloc pool of ZONE_DEVICE memory whose regions are owned by the `percpu_ref` of
//! their `dev_pagemap`. A page handed out from it returns to the pool when its last
//! reference is dropped. [`P2pPool::alloc_pages`] reserves a range of such pages as
//! [`P2pPages`], which makes them live on first use.

use super::Device;
use crate::{
    alloc::Flags,
    bindings,
    device::Core,
    error::{
        code::*,
        to_result,
        Result, //
    },
    genalloc::GenPool,
    mm::zone_device::{
        DevicePages,
        FreeRange,
        PMD_ORDER, //
    },
    page::{
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
};
#[cfg(CONFIG_PCI_P2PDMA_RS)]
use crate::{
    error::from_result,
    mm::virt::VmaNew, //
};
#[cfg(CONFIG_PCI_P2PDMA_RS)]
use core::{
    ffi::c_int,
    marker::PhantomData, //
};

/// Alignment and granularity of p2pmem in physical address space.
///
/// ZONE_DEVICE memory is hot-plugged in subsections: `memremap_pages()` warns and fails
/// for a range whose start or size is not a multiple of this.
pub const P2PMEM_ALIGN: u64 = 1 << bindings::SUBSECTION_SHIFT;

/// What a standard BAR (0 to 5) of a PCI device decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// The device does not implement the BAR, or the PCI core assigned it no address.
    Unassigned,
    /// I/O port space: cannot be p2pmem.
    Io,
    /// Memory space with an address assigned.
    Mem(MemBar),
}

/// A memory BAR of a PCI device, with an address assigned, as the PCI core saw it when
/// [`Device::bar_kind`] was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemBar {
    index: u32,
    start: u64,
    len: u64,
    is_64bit: bool,
    prefetchable: bool,
}

impl MemBar {
    /// The physical address of `size` bytes at `offset` of the BAR, if they can be
    /// p2pmem: not empty, inside the BAR, start and size multiples of [`P2PMEM_ALIGN`].
    fn range(&self, offset: u64, size: u64) -> Result<u64> {
        let end = offset.checked_add(size).ok_or(EINVAL)?;
        if size == 0 || end > self.len {
            return Err(EINVAL);
        }
        let start = self.start.checked_add(offset).ok_or(EINVAL)?;
        if start % P2PMEM_ALIGN != 0 || size % P2PMEM_ALIGN != 0 {
            return Err(EINVAL);
        }
        Ok(start)
    }

    /// The BAR number, 0 to 5.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The CPU physical address of the BAR.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The size of the BAR in bytes (never zero).
    pub fn size(&self) -> u64 {
        self.len
    }

    /// Whether the BAR is a 64-bit memory BAR.
    pub fn is_64bit(&self) -> bool {
        self.is_64bit
    }

    /// Whether the BAR is prefetchable (reads have no side effects).
    pub fn is_prefetchable(&self) -> bool {
        self.prefetchable
    }
}

impl Device {
    /// Describes standard BAR `index` (0 to 5); `EINVAL` for any other index.
    pub fn bar_kind(&self, index: u32) -> Result<BarKind> {
        if index >= bindings::PCI_STD_NUM_BARS {
            return Err(EINVAL);
        }
        let start = self.resource_start(index)?;
        let len = self.resource_len(index)?;
        // CAST: `index` is below `PCI_STD_NUM_BARS`, so it fits in a `c_int`.
        let bar = index as crate::ffi::c_int;
        // SAFETY: By the type invariant `self.0` is a valid `struct pci_dev`, and `bar` is
        // the index of one of its standard resources.
        let flags = unsafe { bindings::pci_resource_flags(self.as_raw(), bar) };
        // CAST: The `IORESOURCE_*` flags are `u32` constants.
        let has = |f: u32| (flags & f as crate::ffi::c_ulong) != 0;
        if len == 0 || has(bindings::IORESOURCE_UNSET) || has(bindings::IORESOURCE_DISABLED) {
            return Ok(BarKind::Unassigned);
        }
        if has(bindings::IORESOURCE_IO) {
            return Ok(BarKind::Io);
        }
        if !has(bindings::IORESOURCE_MEM) {
            return Ok(BarKind::Unassigned);
        }
        Ok(BarKind::Mem(MemBar {
            index,
            start,
            len,
            is_64bit: has(bindings::IORESOURCE_MEM_64),
            prefetchable: has(bindings::IORESOURCE_PREFETCH),
        }))
    }
}

impl Device<Core<'_>> {
    /// Registers `size` bytes at `offset` of the memory BAR `bar` of this device as
    /// p2pmem (`pci_p2pdma_add_resource()`): the range gets ZONE_DEVICE struct pages and
    /// joins the device's p2pmem pool, and `p2pmem/` (with `allocate`) appears in sysfs.
    ///
    /// Everything is undone when the driver unbinds, in this order: `p2pmem/allocate`
    /// goes away and every user mapping of it is zapped, the pages are unmapped once the
    /// last reference to them is dropped (this waits, e.g. for `O_DIRECT` I/O in
    /// flight), and the pool is destroyed.
    ///
    /// Fails with `EINVAL` if `bar` is not this device's BAR as it is now, or if the
    /// range is empty, does not fit in the BAR, or its start (in physical address
    /// space) or size is not a multiple of [`P2PMEM_ALIGN`], or it intersects System
    /// RAM; `EBUSY` if part of it already has device struct pages (already p2pmem,
    /// say); `EOPNOTSUPP` if the device's BARs cannot be mapped by peers; `ENOMEM`.
    pub fn p2pdma_add_resource(&self, bar: &MemBar, offset: u64, size: u64) -> Result {
        // `bar` may describe another device, or be stale: check against this device's
        // BAR as it is now, which is what the C function uses.
        match self.bar_kind(bar.index)? {
            BarKind::Mem(now) if now == *bar => {}
            _ => return Err(EINVAL),
        }
        let start = bar.range(offset, size)?;
        // `memremap_pages()` warns when the range intersects System RAM, and when it
        // overlaps an existing pagemap at its first or last page; a pagemap inside the
        // range makes memory hotplug fail with a warning, after the new pagemap has
        // overwritten the old one's lookup entries. Refuse all of these here. Pagemaps
        // cover whole subsections, so one lookup per subsection finds any overlap. The
        // device lock (held in the `Core` context) keeps another probe of this device
        // from adding a range meanwhile.
        let len: usize = size.try_into().map_err(|_| EINVAL)?;
        // CAST: The resource flag and descriptor are small `u32` constants.
        // SAFETY: `region_intersects()` only reads the resource tree, under its lock.
        let ram = unsafe {
            bindings::region_intersects(
                start,
                len,
                bindings::IORESOURCE_SYSTEM_RAM as crate::ffi::c_ulong,
                bindings::IORES_DESC_NONE as crate::ffi::c_ulong,
            )
        };
        if ram != bindings::REGION_DISJOINT as crate::ffi::c_int {
            return Err(EINVAL);
        }
        let end = start.checked_add(size).ok_or(EINVAL)?;
        let mut addr = start;
        while addr < end {
            let pfn: crate::ffi::c_ulong = (addr >> PAGE_SHIFT).try_into().map_err(|_| EINVAL)?;
            // SAFETY: Any pfn may be looked up; a pagemap found is returned with a
            // reference taken.
            let pgmap = unsafe { bindings::get_dev_pagemap(pfn) };
            if !pgmap.is_null() {
                // SAFETY: `get_dev_pagemap()` returned a pagemap with a reference taken.
                unsafe { bindings::put_dev_pagemap(pgmap) };
                return Err(EBUSY);
            }
            addr += P2PMEM_ALIGN;
        }
        // CAST: `bar.index` is below `PCI_STD_NUM_BARS`.
        let index = bar.index as crate::ffi::c_int;
        // SAFETY: `self` is bound to a driver and its device lock is held (the `Core`
        // context): the function updates `pdev->p2pdma` under that lock only, and the
        // device-managed resources it creates are released when the driver unbinds
        // (also when called from `unbind`: devres is released after `remove`). The
        // range is an aligned part of a memory BAR of this device, outside System RAM
        // and with no pagemap, so `memremap_pages()` does not warn.
        to_result(unsafe { bindings::pci_p2pdma_add_resource(self.as_raw(), index, len, offset) })
    }

    /// Makes the device's p2pmem available (or not) to in-kernel users that look for
    /// p2pmem with `pci_p2pmem_find()`, such as the NVMe target. Does nothing if the
    /// device has no p2pmem.
    pub fn p2pmem_publish(&self, publish: bool) {
        // SAFETY: `self` is a valid PCI device; the function checks whether the device
        // has p2pmem under RCU.
        unsafe { bindings::pci_p2pmem_publish(self.as_raw(), publish) };
    }
}

/// The p2pmem pool of a PCI device.
///
/// # Invariants
///
/// The pool is a P2PDMA pool: every region's owner is the `percpu_ref` of the
/// `dev_pagemap` of its ZONE_DEVICE pages, whose `folio_free` returns a page to this
/// pool and drops one reference on that `percpu_ref`; a large folio it splits with
/// `zone_device_folio_split_free()`, returns whole and drops a reference per page.
#[repr(transparent)]
pub struct P2pPool(GenPool);

impl P2pPool {
    /// # Safety
    ///
    /// `pool` is the p2pmem pool of a PCI device (`pci_p2pdma.pool`), valid for `'a`.
    unsafe fn from_raw<'a>(pool: *mut bindings::gen_pool) -> &'a Self {
        // SAFETY: Transparent wrapper of `GenPool`; validity guaranteed by the caller.
        unsafe { &*pool.cast() }
    }

    /// Reserves `len` bytes (a multiple of `PAGE_SIZE`) of contiguous p2pmem, with no
    /// page live yet: pages are made live one by one with
    /// [`DevicePages::make_live`], and the ones never made live go straight back to
    /// the pool when the returned object is dropped.
    ///
    /// With `folio_order` above zero (at most [`PMD_ORDER`]) the range is aligned to
    /// the size of such a folio if the pool has a free range that is, and its aligned
    /// units become large folios when first used. p2pmem that other users (the C
    /// implementation of `p2pmem/allocate`, `pci_alloc_p2pmem()`) get from the pool is
    /// always single pages: a folio is split when it is freed.
    ///
    /// Fails with `ENOMEM` if no such range is free, `ENODEV` if the device's memory is
    /// being torn down, and `EINVAL` for a length that is zero or not page-aligned, or
    /// a `folio_order` above [`PMD_ORDER`].
    pub fn alloc_pages(&self, len: usize, folio_order: u32, flags: Flags) -> Result<P2pPages> {
        if len == 0 || len % PAGE_SIZE != 0 || folio_order > PMD_ORDER {
            return Err(EINVAL);
        }
        let folio = PAGE_SIZE << folio_order;
        let a = if folio_order > 0 && len >= folio {
            self.0.alloc_owner_aligned(len, folio)
        } else {
            None
        };
        let a = a.or_else(|| self.0.alloc_owner(len)).ok_or(ENOMEM)?;
        // INVARIANT: `self` is a P2PDMA pool.
        let free = PoolFree(self.0.as_raw());
        // SAFETY: By the type invariant the range is the direct mapping of free
        // ZONE_DEVICE pages of the pagemap whose `ref` is the region's owner, and
        // `folio_free` returns them to this pool (a large folio whole, split into
        // single pages); the allocation is exclusively ours.
        let pages = unsafe {
            DevicePages::new(
                a.addr,
                len / PAGE_SIZE,
                a.owner.cast(),
                free,
                folio_order,
                flags,
            )
        };
        match pages {
            Ok(pages) => Ok(pages),
            Err(e) => {
                // SAFETY: No page of the range was made live; it is still ours to give
                // back.
                unsafe { self.0.free(a) };
                Err(e)
            }
        }
    }

    /// Bytes of p2pmem not allocated.
    pub fn avail(&self) -> usize {
        self.0.avail()
    }
}

/// Pages of a device's p2pmem, reserved by [`P2pPool::alloc_pages`].
pub type P2pPages = DevicePages<PoolFree>;

/// Gives never-used p2pmem back to its device's pool.
///
/// # Invariants
///
/// The pointer is a P2PDMA pool (see [`P2pPool`]); it stays valid while a reference on
/// the `percpu_ref` of one of its pagemaps is held, because the pool is destroyed only
/// after the pagemaps are torn down, which waits for every such reference.
#[derive(Clone)]
pub struct PoolFree(*mut bindings::gen_pool);

// SAFETY: genalloc pools may be used from any thread and context.
unsafe impl Send for PoolFree {}
// SAFETY: See above.
unsafe impl Sync for PoolFree {}

impl FreeRange for PoolFree {
    unsafe fn free_range(&self, addr: usize, len: usize) {
        // SAFETY: By the type invariant and the caller's pagemap reference the pool is
        // alive; the caller guarantees the range came from it and is unused.
        unsafe { bindings::gen_pool_free_owner(self.0, addr, len, core::ptr::null_mut()) };
    }
}

/// An implementation of the `p2pmem/allocate` mmap path.
#[cfg(CONFIG_PCI_P2PDMA_RS)]
pub trait P2pMmap: 'static {
    /// Maps `vma` onto p2pmem of `pdev`, allocated from `pool`.
    ///
    /// The device's p2pmem stays set up for the duration of the call; the checks the
    /// two implementations share (a shared mapping at offset zero) have been made.
    fn mmap(pdev: &Device, pool: &P2pPool, vma: &VmaNew) -> Result;

    /// The p2pmem of `pdev` is going away: refuse new faults, zap every user mapping
    /// and drop every page reference taken by `mmap`, without waiting for userspace.
    fn unmap_all(pdev: &Device);
}

#[cfg(CONFIG_PCI_P2PDMA_RS)]
struct Adapter<T: P2pMmap>(PhantomData<T>);

#[cfg(CONFIG_PCI_P2PDMA_RS)]
impl<T: P2pMmap> Adapter<T> {
    const OPS: bindings::pci_p2pdma_mmap_ops = bindings::pci_p2pdma_mmap_ops {
        mmap: Some(Self::mmap),
        unmap_all: Some(Self::unmap_all),
    };

    const fn ops() -> &'static bindings::pci_p2pdma_mmap_ops {
        &Self::OPS
    }

    /// # Safety
    ///
    /// Called by `p2pmem_alloc_mmap()` with a valid device, its pool and a VMA being set
    /// up by an `mmap` handler.
    unsafe extern "C" fn mmap(
        pdev: *mut bindings::pci_dev,
        pool: *mut bindings::gen_pool,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        from_result(|| {
            // SAFETY: `pdev` is a valid PCI device for the call.
            let pdev = unsafe { &*pdev.cast::<Device>() };
            // SAFETY: `pool` is the device's p2pmem pool, alive for the call.
            let pool = unsafe { P2pPool::from_raw(pool) };
            // SAFETY: The VMA is being set up by an `mmap` handler.
            let vma = unsafe { VmaNew::from_raw(vma) };
            T::mmap(pdev, pool, vma)?;
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the unbind path of a valid device.
    unsafe extern "C" fn unmap_all(pdev: *mut bindings::pci_dev) {
        // SAFETY: `pdev` is a valid PCI device for the call.
        T::unmap_all(unsafe { &*pdev.cast::<Device>() });
    }
}

/// Makes `T` the implementation that can serve `p2pmem/allocate` (chosen with the
/// `p2pdma.impl=` boot parameter). It stays registered for the lifetime of the kernel.
///
/// Fails with `EBUSY` if another implementation is registered.
#[cfg(CONFIG_PCI_P2PDMA_RS)]
pub fn register<T: P2pMmap>() -> Result {
    // SAFETY: The ops are `'static` and their functions uphold the contract of
    // `struct pci_p2pdma_mmap_ops`.
    crate::error::to_result(unsafe { bindings::pci_p2pdma_register_mmap_ops(Adapter::<T>::ops()) })
}

#[cfg(CONFIG_RUST_P2PDMA_KUNIT_TEST)]
#[macros::kunit_tests(rust_kernel_pci_p2pdma)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn bar(start: u64, len: u64) -> MemBar {
        MemBar {
            index: 2,
            start,
            len,
            is_64bit: true,
            prefetchable: true,
        }
    }

    #[test]
    fn whole_aligned_bar() {
        let b = bar(0x8_0000_0000, 256 * MIB);
        assert_eq!(b.range(0, 256 * MIB), Ok(0x8_0000_0000));
        assert_eq!(b.range(2 * MIB, 4 * MIB), Ok(0x8_0020_0000));
    }

    #[test]
    fn refuses_what_memremap_pages_would_warn_about() {
        let b = bar(0x8_0000_0000, 256 * MIB);
        // Not a multiple of the subsection size, at the start or in the size.
        assert_eq!(b.range(4096, 2 * MIB), Err(EINVAL));
        assert_eq!(b.range(0, MIB), Err(EINVAL));
        // A small BAR (256 bytes of registers) at an unaligned address.
        assert_eq!(bar(0xfe00_1000, 256).range(0, 256), Err(EINVAL));
        // A BAR at an address that is not 2 MiB aligned, though its size is.
        assert_eq!(bar(0x8_0010_0000, 4 * MIB).range(0, 2 * MIB), Err(EINVAL));
    }

    #[test]
    fn refuses_empty_and_outside() {
        let b = bar(0x8_0000_0000, 256 * MIB);
        assert_eq!(b.range(0, 0), Err(EINVAL));
        assert_eq!(b.range(254 * MIB, 4 * MIB), Err(EINVAL));
        assert_eq!(b.range(256 * MIB, 2 * MIB), Err(EINVAL));
        assert_eq!(b.range(u64::MAX - MIB, 2 * MIB), Err(EINVAL));
        // The start overflows: offset and size fit the BAR, the address does not.
        assert_eq!(
            bar(u64::MAX - MIB, 4 * MIB).range(2 * MIB, 2 * MIB),
            Err(EINVAL)
        );
    }
}
