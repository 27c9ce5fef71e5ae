// SPDX-License-Identifier: GPL-2.0

//! Mappings of p2pmem: the map object shared by a mapping's VMAs, the fault path, and
//! the per-device list that unbind revokes.
//!
//! A [`Map`] is created by `mmap` and shared (refcounted) by every VMA made from that
//! mapping: a partial `munmap` or `mprotect` splits the VMA, `fork` duplicates it,
//! `mremap` moves it, and each copy takes a reference in `open`; `close` drops it.
//! The map's [`MapPages`] are also on the device's list, so that unbind finds them
//! even before the new VMA is linked into the device inode's address_space (that
//! happens only after `mmap` returns).
//!
//! Release never waits: when a map's last VMA closes or its device is unbound,
//! whichever comes first, the pages it never faulted in go back to the pool at once
//! and the others after an RCU grace period, from a worker that clears them
//! ([`RcuBox`]). When a VMA that is not the map's last closes, the parts of its range
//! that no other VMA of the map still maps are released the same way: VMAs are filed
//! in the device file's reverse map at their pages' index in the device's pagemap
//! ([`Map::base`]), where [`ClosingVma::for_each_unmapped_part`] looks.

use crate::{
    pool::{
        PoolState,
        Reservation, //
    },
    pseudofs,
};
use kernel::{
    fs::File,
    mm::zone_device::{SplitState, PMD_ORDER},
    mm::{
        virt::VmaNew,
        vm_ops::{ClosingVma, HugeFault, VmFault, VmFaultResult, VmOperations},
    },
    new_mutex, new_spinlock, new_srcu,
    pci::{
        self,
        p2pdma::{P2pMmap, P2pPool},
    },
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Relaxed},
        rcu_box::RcuBox,
        Arc, ArcBorrow, Mutex, SetOnce, SpinLock, Srcu,
    },
};

/// What a map's pages are doing.
struct PageState {
    /// The device is gone: faults get SIGBUS.
    revoked: bool,
    /// The pages, until they are released.
    pages: Option<RcuBox<Reservation>>,
}

/// The pages of one mapping, shared by its [`Map`] and its device's list.
#[pin_data]
struct MapPages {
    /// Held only to look at or change the page state, never while sleeping: faults
    /// on different pages of one map do not wait for each other's page table updates.
    #[pin]
    state: SpinLock<PageState>,
}

impl MapPages {
    /// Runs `f` on the map's pages under the state lock; `None` if the map was revoked
    /// or its pages released, where a fault gets `SIGBUS`.
    fn with_live_pages<R>(&self, f: impl FnOnce(&mut Reservation) -> R) -> Option<R> {
        let mut state = self.state.lock();
        if state.revoked {
            return None;
        }
        state.pages.as_mut().map(|res| f(res))
    }

    /// Takes the pages out and releases them: the ones never faulted in at once (no
    /// page table entry ever pointed to them), the others after an RCU grace period,
    /// from a worker that clears them.
    fn release(&self) {
        let pages = self.state.lock().pages.take();
        if let Some(mut p) = pages {
            if p.release_unused() {
                p.drop_after_grace_period();
            }
            // Otherwise no page of `p` was ever mapped: it is dropped here, at once.
        }
    }

    /// Pages `start..end` of the map are in no VMA any more (a partial `munmap`, an
    /// `mremap` shrink): releases them as [`MapPages::release`] releases all of them.
    ///
    /// No VMA maps them, so no fault makes any of them live meanwhile: the pages never
    /// faulted in go back first, and memory for the split is allocated only if pages
    /// that were faulted in remain, outside the lock. Without that memory they stay
    /// with the map until it goes.
    fn release_part(&self, start: usize, end: usize) {
        let part = {
            let mut state = self.state.lock();
            let revoked = state.revoked;
            match state.pages.as_mut() {
                Some(res) if !revoked => res.give_back_part(start, end),
                _ => None,
            }
        };
        // A folio of which another VMA still maps a page stays: the range may shrink.
        let Some((start, end)) = part else {
            return;
        };
        // Once split off, the pages must wait for the grace period: allocate first.
        let Ok(mut part) = RcuBox::new(None, GFP_KERNEL) else {
            return;
        };
        let Ok(mem) = SplitState::new(end - start, GFP_KERNEL) else {
            return;
        };
        let split = {
            let mut state = self.state.lock();
            let revoked = state.revoked;
            match state.pages.as_mut() {
                Some(res) if !revoked => res.split_off(start, end, mem),
                _ => Err(mem),
            }
        };
        // Memory not used is freed here, outside the lock (`kvfree` may sleep).
        if let Ok(p) = split {
            *part = Some(p);
            part.drop_after_grace_period();
        }
    }
}

/// The mappings of one device.
struct MapList {
    /// Cleared by unbind: no new maps.
    active: bool,
    maps: KVec<Arc<MapPages>>,
}

/// A device whose p2pmem this implementation has mapped.
#[pin_data]
struct P2pDevice {
    pdev: ARef<pci::Device>,
    /// The device's file on the p2pmem pseudo file system; every VMA is moved onto it.
    file: ARef<File>,
    #[pin]
    maps: Mutex<MapList>,
    /// Read-locked by faults from their check of `revoked` to their page table update;
    /// unbind waits for the faults in progress between revoking and zapping.
    #[pin]
    faults: Srcu,
    /// Pages on their way back to the pool (`mmap` waits for them).
    pool: Arc<PoolState>,
}

/// The object behind every VMA of one mapping.
pub(crate) struct Map {
    dev: Arc<P2pDevice>,
    pages: Arc<MapPages>,
    /// The VMAs' offset in the device file of page 0 of the map: its index in the
    /// device's pagemap, so that live maps of one pagemap do not overlap in the file's
    /// reverse map.
    base: usize,
    /// Number of VMAs.
    vmas: Atomic<usize>,
}

impl Drop for Map {
    fn drop(&mut self) {
        // The last VMA is gone, and its page table entries with it.
        {
            let mut list = self.dev.maps.lock();
            // Maps usually go in the reverse order they came (exit unmaps by address,
            // mmap hands out addresses top-down): search from the end.
            if let Some(i) = list.maps.iter().rposition(|m| Arc::ptr_eq(m, &self.pages)) {
                swap_remove(&mut list.maps, i);
            }
        }
        self.pages.release();
    }
}

/// Removes element `i` in O(1), not keeping the order.
fn swap_remove<T>(v: &mut KVec<T>, i: usize) -> Option<T> {
    let last = v.len().checked_sub(1)?;
    v.swap(i, last);
    v.pop()
}

/// Devices with live mappings, and the pseudo file system their files live on.
#[pin_data]
struct Registry {
    mount: pseudofs::P2pMemMount,
    #[pin]
    devices: Mutex<KVec<Arc<P2pDevice>>>,
}

static REGISTRY: SetOnce<Pin<KBox<Registry>>> = SetOnce::new();

/// Mounts the pseudo file system and sets up the registry.
pub(crate) fn init() -> Result {
    let reg = KBox::pin_init(
        try_pin_init!(Registry {
            mount: pseudofs::P2pMemMount::new()?,
            devices <- new_mutex!(KVec::new()),
        }),
        GFP_KERNEL,
    )?;
    if !REGISTRY.populate(reg) {
        return Err(EBUSY);
    }
    Ok(())
}

fn registry() -> Result<&'static Registry> {
    REGISTRY.as_ref().map(|r| &**r).ok_or(ENODEV)
}

impl Registry {
    /// The state of `pdev`, created on its first mapping.
    fn device(&self, pdev: &pci::Device) -> Result<Arc<P2pDevice>> {
        let mut devices = self.devices.lock();
        if let Some(d) = devices.iter().find(|d| core::ptr::eq(&*d.pdev, pdev)) {
            return Ok(d.clone());
        }
        let dev = Arc::pin_init(
            try_pin_init!(P2pDevice {
                pdev: pdev.into(),
                file: self.mount.device_file(pdev)?,
                maps <- new_mutex!(MapList { active: true, maps: KVec::new() }),
                faults <- new_srcu!(),
                pool: PoolState::new()?,
            }),
            GFP_KERNEL,
        )?;
        devices.push(dev.clone(), GFP_KERNEL)?;
        Ok(dev)
    }

    /// Forgets `pdev`, returning its state if it had one.
    fn remove(&self, pdev: &pci::Device) -> Option<Arc<P2pDevice>> {
        let mut devices = self.devices.lock();
        let i = devices.iter().position(|d| core::ptr::eq(&*d.pdev, pdev))?;
        swap_remove(&mut devices, i)
    }
}

/// The VMA operations of a p2pmem mapping.
pub(crate) struct MapOps;

#[vtable]
impl VmOperations for MapOps {
    type Data = Arc<Map>;

    fn open(map: ArcBorrow<'_, Map>) -> Arc<Map> {
        map.vmas.fetch_add(1, Relaxed);
        map.into()
    }

    fn close(map: Arc<Map>, vma: &ClosingVma) {
        // The last VMA: everything is released when `map` is dropped.
        if map.vmas.fetch_sub(1, Relaxed) == 1 {
            return;
        }
        // Another VMA may still map all of this one's range, or part of it: release
        // the rest now. A racing close of the other VMA may find the same parts; the
        // second release of a part finds nothing left to do.
        // Look at whole 2 MiB blocks around the range: a folio goes back once no VMA
        // maps any page of it, even when this VMA had only part of it.
        vma.for_each_unmapped_part(1 << PMD_ORDER, |first, end| {
            let (s, e) = (first.saturating_sub(map.base), end.saturating_sub(map.base));
            if s < e {
                map.pages.release_part(s, e);
            }
        });
    }

    fn fault(map: ArcBorrow<'_, Map>, vmf: &VmFault) -> VmFaultResult {
        let Some(index) = vmf.pgoff().checked_sub(map.base) else {
            return VmFaultResult::SIGBUS;
        };
        // Unbind revokes, then waits for the faults inside this section, then zaps:
        // a PTE inserted here is either seen by the zap or never inserted.
        let _fault = map.dev.faults.read_lock();
        // The page stays live while the VMA maps it: its range of the map is released
        // only when no VMA maps it any more, or by unbind, which waits for this fault.
        match map.pages.with_live_pages(|res| res.page_for_mapping(index)) {
            Some(Some(page)) => vmf.insert_page(&page.page()),
            _ => VmFaultResult::SIGBUS,
        }
    }

    fn huge_fault(map: ArcBorrow<'_, Map>, vmf: &HugeFault<'_>) -> VmFaultResult {
        // Where no PMD can map the range, `fault` maps its pages one by one.
        if !vmf.pmd_suitable() {
            return VmFaultResult::FALLBACK;
        }
        let Some(index) = vmf.pmd_pgoff().checked_sub(map.base) else {
            return VmFaultResult::SIGBUS;
        };
        // As in `fault`.
        let _fault = map.dev.faults.read_lock();
        match map
            .pages
            .with_live_pages(|res| res.folio_for_mapping(index))
        {
            Some(Some(folio)) => vmf.insert_folio_pmd(&folio),
            // Pages there cannot be one folio: `fault` maps them one by one.
            Some(None) => VmFaultResult::FALLBACK,
            None => VmFaultResult::SIGBUS,
        }
    }
}

/// The implementation registered with the PCI P2PDMA core.
pub(crate) struct P2pMem;

impl P2pMmap for P2pMem {
    fn mmap(pdev: &pci::Device, pool: &P2pPool, vma: &VmaNew) -> Result {
        let len = vma.end() - vma.start();
        let dev = registry()?.device(pdev)?;
        // Pages of this device's maps released just before (munmap, exit) come back
        // to the pool after a grace period and clearing: when the pool is short only
        // because of them, wait (killable, bounded) rather than fail.
        let res = loop {
            let seen = dev.pool.progress();
            match Reservation::new(pool, &dev.pool, len) {
                Err(e) if e == ENOMEM => dev.pool.wait(seen, pool, len)?,
                r => break r?,
            }
        };
        // The VMA is filed in the device file's reverse map at the map's pages' offset
        // in the device's memory, which is how a closing VMA finds the parts of the
        // map no other VMA maps. Live maps of one pagemap do not overlap there, so
        // that search stays short. (VMAs of two maps can be adjacent in both address
        // and offset; `VM_DONTEXPAND`, a `VM_SPECIAL` flag, keeps them from merging.)
        let base = res.first_index();
        vma.set_pgoff(base)?;
        let res = RcuBox::new(res, GFP_KERNEL)?;
        let pages = Arc::pin_init(
            pin_init!(MapPages {
                state <- new_spinlock!(PageState { revoked: false, pages: Some(res) }),
            }),
            GFP_KERNEL,
        )?;
        let map = Arc::new(
            Map {
                dev: dev.clone(),
                pages: pages.clone(),
                base,
                vmas: Atomic::new(1),
            },
            GFP_KERNEL,
        )?;
        {
            let mut list = dev.maps.lock();
            if !list.active {
                return Err(ENODEV);
            }
            list.maps.push(pages, GFP_KERNEL)?;
        }
        // Nothing below can fail.
        vma.set_dontexpand();
        vma.set_dontdump();
        // Faults map aligned 2 MiB of the reservation with one PMD where they can.
        vma.set_hugepage();
        vma.set_file(&dev.file);
        vma.set_vm_ops::<MapOps>(map);
        Ok(())
    }

    fn unmap_all(pdev: &pci::Device) {
        let Some(dev) = registry().ok().and_then(|r| r.remove(pdev)) else {
            return;
        };
        let maps = {
            let mut list = dev.maps.lock();
            list.active = false;
            core::mem::take(&mut list.maps)
        };
        // 1. No new faults, and wait for the faults in progress to insert their PTEs.
        for m in maps.iter() {
            m.state.lock().revoked = true;
        }
        dev.faults.synchronize_expedited();
        // The pool goes away once every page is back: do not clear them.
        dev.pool.set_gone();
        // 2. Remove every PTE of every process mapping the device.
        pseudofs::zap(&dev.file);
        // 3. Drop the pages once GUP-fast walkers that saw an old PTE are done.
        for m in maps.iter() {
            m.release();
        }
    }
}
