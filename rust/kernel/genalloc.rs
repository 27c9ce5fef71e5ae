// SPDX-License-Identifier: GPL-2.0

//! General purpose special memory pools (genalloc).
//!
//! C header: [`include/linux/genalloc.h`](srctree/include/linux/genalloc.h)
//!
//! A [`GenPool`] hands out ranges of a memory region that the kernel's page allocator
//! does not manage, such as device memory. Each region added to a pool may carry an
//! *owner* pointer, returned with every allocation from that region; PCI P2PDMA uses
//! it for the `percpu_ref` of the region's `dev_pagemap`.

use crate::{
    bindings,
    error::{code::*, to_result, Result},
    types::Opaque,
};
use core::{ffi::c_void, ptr::NonNull};

/// A genalloc pool, `struct gen_pool`.
///
/// # Invariants
///
/// The pool is valid (created by `gen_pool_create()` and not destroyed) for as long as
/// a reference to it exists.
#[repr(transparent)]
pub struct GenPool(Opaque<bindings::gen_pool>);

// SAFETY: genalloc is safe to use from any thread: allocation and free are lockless
// (atomic bitmap operations under RCU) and adding memory takes the pool's spinlock.
unsafe impl Sync for GenPool {}
// SAFETY: See above; nothing in a pool is tied to the thread that created it.
unsafe impl Send for GenPool {}

/// A range allocated from a [`GenPool`], with the owner of the region it came from.
///
/// This is a plain description: nothing is freed when it is dropped. Call
/// [`GenPool::free`] to give it back (or hand it to a mechanism that does, such as a
/// ZONE_DEVICE page's `folio_free`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenAlloc {
    /// Virtual address of the range.
    pub addr: usize,
    /// Length in bytes.
    pub size: usize,
    /// The owner pointer given to [`GenPool::add_owner`] for the region, or null.
    pub owner: *mut c_void,
}

impl GenPool {
    /// Borrows a C `struct gen_pool`.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid pool that stays valid (is not destroyed) for `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::gen_pool) -> &'a Self {
        // SAFETY: `GenPool` is a transparent wrapper of `struct gen_pool`, and the caller
        // guarantees the pointer is valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw pointer.
    pub fn as_raw(&self) -> *mut bindings::gen_pool {
        self.0.get()
    }

    /// Allocates `size` bytes with the pool's algorithm.
    ///
    /// Returns `None` when no free range of that size exists. Never sleeps.
    pub fn alloc_owner(&self, size: usize) -> Option<GenAlloc> {
        // SAFETY: By the type invariant the pool is valid; `owner` is a valid place to
        // store the owner pointer.
        self.alloc_with(size, |owner| unsafe {
            bindings::gen_pool_alloc_owner(self.as_raw(), size, owner)
        })
    }

    /// The allocation `alloc` made: it returns the address (0 for none) and stores
    /// the region's owner in the pointer it is given.
    fn alloc_with(
        &self,
        size: usize,
        alloc: impl FnOnce(*mut *mut c_void) -> crate::ffi::c_ulong,
    ) -> Option<GenAlloc> {
        let mut owner: *mut c_void = core::ptr::null_mut();
        let addr = alloc(&mut owner);
        if addr == 0 {
            return None;
        }
        Some(GenAlloc {
            addr: addr as usize,
            size,
            owner,
        })
    }

    /// Allocates `size` bytes at an address that is a multiple of `align` (a power of
    /// two), first fit.
    ///
    /// Returns `None` when no such free range exists, and for an `align` that is not a
    /// power of two or does not fit in a C `int`. Never sleeps.
    pub fn alloc_owner_aligned(&self, size: usize, align: usize) -> Option<GenAlloc> {
        if !align.is_power_of_two() {
            return None;
        }
        let mut data = bindings::genpool_data_align {
            align: align.try_into().ok()?,
        };
        // SAFETY: By the type invariant the pool is valid; `gen_pool_first_fit_align`
        // reads `data`, which lives for the call, as its `genpool_data_align`; `owner` is
        // a valid place to store the owner pointer.
        self.alloc_with(size, |owner| unsafe {
            bindings::gen_pool_alloc_algo_owner(
                self.as_raw(),
                size,
                Some(bindings::gen_pool_first_fit_align),
                (&raw mut data).cast(),
                owner,
            )
        })
    }

    /// Gives an allocation back to the pool.
    ///
    /// # Safety
    ///
    /// `alloc` must have been returned by [`GenPool::alloc_owner`] or
    /// [`GenPool::alloc_owner_aligned`] of this pool and not
    /// freed since, and nothing may use the range afterwards.
    pub unsafe fn free(&self, alloc: GenAlloc) {
        // SAFETY: The caller guarantees the range was allocated from this pool and is
        // freed once; the pool is valid by the type invariant.
        unsafe {
            bindings::gen_pool_free_owner(
                self.as_raw(),
                alloc.addr,
                alloc.size,
                core::ptr::null_mut(),
            )
        }
    }

    /// Bytes not allocated.
    pub fn avail(&self) -> usize {
        // SAFETY: The pool is valid by the type invariant.
        unsafe { bindings::gen_pool_avail(self.as_raw()) }
    }

    /// Bytes in all regions of the pool.
    pub fn size(&self) -> usize {
        // SAFETY: The pool is valid by the type invariant.
        unsafe { bindings::gen_pool_size(self.as_raw()) }
    }
}

/// A pool created and destroyed by Rust code.
///
/// # Invariants
///
/// `ptr` was returned by `gen_pool_create()` and is destroyed only in `drop`.
pub struct OwnedGenPool {
    ptr: NonNull<bindings::gen_pool>,
}

// SAFETY: See `GenPool`.
unsafe impl Send for OwnedGenPool {}
// SAFETY: See `GenPool`.
unsafe impl Sync for OwnedGenPool {}

impl OwnedGenPool {
    /// Creates an empty pool whose allocations are multiples of `1 << min_alloc_order`
    /// bytes, with its bookkeeping on NUMA node `nid` (`-1` for any).
    pub fn new(min_alloc_order: u32, nid: i32) -> Result<Self> {
        let order = i32::try_from(min_alloc_order).map_err(|_| EINVAL)?;
        // SAFETY: `gen_pool_create` has no preconditions.
        let ptr = unsafe { bindings::gen_pool_create(order, nid) };
        // INVARIANT: `ptr` is a freshly created pool.
        Ok(Self {
            ptr: NonNull::new(ptr).ok_or(ENOMEM)?,
        })
    }

    /// Adds the region `[addr, addr + size)` to the pool, with `owner` returned by
    /// every allocation from it.
    ///
    /// # Safety
    ///
    /// The region must be valid memory that nothing else uses, and stay so until every
    /// allocation from it has been freed and the pool dropped.
    pub unsafe fn add_owner(&self, addr: usize, size: usize, owner: *mut c_void) -> Result {
        // SAFETY: The pool is valid by the type invariant; the caller guarantees the
        // region. The physical address is not used by this pool's users.
        to_result(unsafe {
            bindings::gen_pool_add_owner(
                self.ptr.as_ptr(),
                addr,
                bindings::phys_addr_t::MAX,
                size,
                -1,
                owner,
            )
        })
    }
}

impl core::ops::Deref for OwnedGenPool {
    type Target = GenPool;

    fn deref(&self) -> &GenPool {
        // SAFETY: The pool is valid until `drop` by the type invariant.
        unsafe { GenPool::from_raw(self.ptr.as_ptr()) }
    }
}

impl Drop for OwnedGenPool {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the pool was created by `gen_pool_create` and is
        // destroyed only here. `gen_pool_destroy` BUGs if allocations are outstanding;
        // `GenPool::free`'s contract makes their owners free them first.
        unsafe { bindings::gen_pool_destroy(self.ptr.as_ptr()) };
    }
}

#[cfg(CONFIG_RUST_P2PDMA_KUNIT_TEST)]
#[macros::kunit_tests(rust_kernel_genalloc)]
mod tests {
    use super::*;
    use crate::alloc::{flags::GFP_KERNEL, KVec};

    const PAGE: usize = 4096;

    #[test]
    fn alloc_until_full_then_free() -> Result {
        let mut backing = KVec::<u8>::with_capacity(16 * PAGE, GFP_KERNEL)?;
        let base = backing.as_mut_ptr() as usize;
        let pool = OwnedGenPool::new(12, -1)?;
        let mut owner = 0u8;
        let owner_ptr = core::ptr::addr_of_mut!(owner).cast::<c_void>();
        // SAFETY: `backing` outlives `pool` (declared first, dropped last) and is not
        // otherwise used.
        unsafe { pool.add_owner(base, 16 * PAGE, owner_ptr)? };
        assert_eq!(pool.size(), 16 * PAGE);
        assert_eq!(pool.avail(), 16 * PAGE);

        let a = pool.alloc_owner(4 * PAGE).ok_or(ENOMEM)?;
        assert_eq!(a.owner, owner_ptr);
        assert!(a.addr >= base && a.addr + a.size <= base + 16 * PAGE);
        assert_eq!(pool.avail(), 12 * PAGE);

        let b = pool.alloc_owner(12 * PAGE).ok_or(ENOMEM)?;
        assert_eq!(pool.avail(), 0);
        assert!(pool.alloc_owner(PAGE).is_none());

        // SAFETY: `a` and `b` came from this pool and are freed once.
        unsafe {
            pool.free(a);
            pool.free(b);
        }
        assert_eq!(pool.avail(), 16 * PAGE);
        // Rounded up to the minimum order.
        let c = pool.alloc_owner(1).ok_or(ENOMEM)?;
        assert_eq!(pool.avail(), 15 * PAGE);
        // SAFETY: `c` came from this pool and is freed once.
        unsafe { pool.free(c) };
        drop(pool);
        drop(backing);
        Ok(())
    }

    #[test]
    fn aligned_allocations() -> Result {
        let pool = OwnedGenPool::new(12, -1)?;
        // genalloc never touches the memory it hands out: any address range will do.
        let base = 0x10_3000;
        // SAFETY: The range is never dereferenced, and no allocation outlives the pool.
        unsafe { pool.add_owner(base, 64 * PAGE, core::ptr::null_mut())? };
        let a = pool
            .alloc_owner_aligned(4 * PAGE, 16 * PAGE)
            .ok_or(ENOMEM)?;
        assert_eq!(a.addr, 0x11_0000);
        // A single page goes first fit, before the aligned block.
        let b = pool.alloc_owner(PAGE).ok_or(ENOMEM)?;
        assert_eq!(b.addr, base);
        let c = pool
            .alloc_owner_aligned(32 * PAGE, 32 * PAGE)
            .ok_or(ENOMEM)?;
        assert_eq!(c.addr, 0x12_0000);
        // 0x100000 is below the pool, 0x140000 has 3 pages left.
        assert!(pool.alloc_owner_aligned(4 * PAGE, 64 * PAGE).is_none());
        assert!(pool.alloc_owner_aligned(PAGE, 3 * PAGE).is_none());
        // SAFETY: `a`, `b` and `c` came from this pool and are freed once.
        unsafe {
            pool.free(a);
            pool.free(b);
            pool.free(c);
        }
        assert_eq!(pool.avail(), 64 * PAGE);
        Ok(())
    }

    #[test]
    fn empty_pool_refuses() -> Result {
        let pool = OwnedGenPool::new(12, -1)?;
        assert!(pool.alloc_owner(PAGE).is_none());
        assert_eq!(pool.size(), 0);
        Ok(())
    }
}
