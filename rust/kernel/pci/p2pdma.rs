// SPDX-License-Identifier: GPL-2.0

//! PCI peer-to-peer DMA memory: the p2pmem pool of a device and the hook through which
//! an implementation of `p2pmem/allocate` mmap serves userspace.
//!
//! C header: [`include/linux/pci-p2pdma.h`](srctree/include/linux/pci-p2pdma.h)
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
    error::{code::*, from_result, Result},
    genalloc::GenPool,
    mm::{
        virt::VmaNew,
        zone_device::{DevicePages, FreeRange},
    },
    page::PAGE_SIZE,
};
use core::{ffi::c_int, marker::PhantomData};

/// The p2pmem pool of a PCI device.
///
/// # Invariants
///
/// The pool is a P2PDMA pool: every region's owner is the `percpu_ref` of the
/// `dev_pagemap` of its ZONE_DEVICE pages, whose `folio_free` returns a page to this
/// pool and drops one reference on that `percpu_ref`.
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
    /// Fails with `ENOMEM` if no such range is free, `ENODEV` if the device's memory is
    /// being torn down, and `EINVAL` for a length that is zero or not page-aligned.
    pub fn alloc_pages(&self, len: usize, flags: Flags) -> Result<P2pPages> {
        if len == 0 || len % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        let a = self.0.alloc_owner(len).ok_or(ENOMEM)?;
        // INVARIANT: `self` is a P2PDMA pool.
        let free = PoolFree(self.0.as_raw());
        // SAFETY: By the type invariant the range is the direct mapping of free
        // ZONE_DEVICE pages of the pagemap whose `ref` is the region's owner, and
        // `folio_free` returns them to this pool; the allocation is exclusively ours.
        match unsafe { DevicePages::new(a.addr, len / PAGE_SIZE, a.owner.cast(), free, flags) } {
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

struct Adapter<T: P2pMmap>(PhantomData<T>);

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
pub fn register<T: P2pMmap>() -> Result {
    // SAFETY: The ops are `'static` and their functions uphold the contract of
    // `struct pci_p2pdma_mmap_ops`.
    crate::error::to_result(unsafe { bindings::pci_p2pdma_register_mmap_ops(Adapter::<T>::ops()) })
}
