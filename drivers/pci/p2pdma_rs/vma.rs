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
//! and the others are handed to `call_rcu()`.

use crate::{
    pool::{
        Reservation,
        Returning, //
    },
    pseudofs,
};
use kernel::{
    fs::File,
    mm::{
        virt::VmaNew,
        vm_ops::{VmFault, VmFaultResult, VmOperations},
    },
    new_mutex,
    pci::{
        self,
        p2pdma::{P2pMmap, P2pPool},
    },
    prelude::*,
    sync::{aref::ARef, rcu_box::RcuBox, Arc, ArcBorrow, Mutex, SetOnce},
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
    #[pin]
    state: Mutex<PageState>,
    /// The device's pages on their way back to the pool.
    returning: Arc<Returning>,
}

impl MapPages {
    /// Takes the pages out and releases them: the ones never faulted in at once (no
    /// page table entry ever pointed to them), the others after an RCU grace period.
    fn release(&self) {
        let pages = self.state.lock().pages.take();
        if let Some(mut p) = pages {
            if p.release_unused(&self.returning) {
                p.drop_after_grace_period();
            }
            // Otherwise no page of `p` was ever mapped: it is dropped here, at once.
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
    /// Pages of released maps waiting for a grace period; `mmap` waits for them.
    returning: Arc<Returning>,
}

/// The object behind every VMA of one mapping.
pub(crate) struct Map {
    dev: Arc<P2pDevice>,
    pages: Arc<MapPages>,
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
                returning: Returning::new()?,
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
        map.into()
    }

    fn fault(map: ArcBorrow<'_, Map>, vmf: &VmFault) -> VmFaultResult {
        let mut state = map.pages.state.lock();
        if state.revoked {
            return VmFaultResult::SIGBUS;
        }
        let Some(res) = state.pages.as_mut() else {
            return VmFaultResult::SIGBUS;
        };
        // The PTE is inserted under the lock, so unbind's zap, which follows the
        // revocation, removes it.
        match res.page_for_mapping(vmf.pgoff()) {
            Some(page) => vmf.insert_page(&page),
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
        // to the pool after a grace period: when the pool is short only because of
        // them, wait (killable, bounded) rather than fail.
        let res = loop {
            let seen = dev.returning.completed();
            match Reservation::new(pool, len) {
                Err(e) if e == ENOMEM => dev.returning.wait(seen, pool, len)?,
                r => break r?,
            }
        };
        let res = RcuBox::new(res, GFP_KERNEL)?;
        let returning = dev.returning.clone();
        let pages = Arc::pin_init(
            pin_init!(MapPages {
                state <- new_mutex!(PageState { revoked: false, pages: Some(res) }),
                returning,
            }),
            GFP_KERNEL,
        )?;
        let map = Arc::new(
            Map {
                dev: dev.clone(),
                pages: pages.clone(),
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
        // 1. No new faults: a fault that got in first has inserted its PTE already.
        for m in maps.iter() {
            m.state.lock().revoked = true;
        }
        // 2. Remove every PTE of every process mapping the device.
        pseudofs::zap(&dev.file);
        // 3. Drop the pages once GUP-fast walkers that saw an old PTE are done.
        for m in maps.iter() {
            m.release();
        }
    }
}
