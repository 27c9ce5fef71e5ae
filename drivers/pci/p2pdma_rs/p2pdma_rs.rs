// SPDX-License-Identifier: GPL-2.0

//! PCI peer-to-peer DMA memory, mapped into userspace: the Rust implementation of
//! `p2pmem/allocate`.
//!
//! ```c
//! int fd = open("/sys/bus/pci/devices/0000:02:00.0/p2pmem/allocate", O_RDWR);
//! char *buf = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
//!
//! buf[0] = 1;                              // one page of the device's CMB, zeroed
//! pwrite(nvme_fd, buf, 1 << 20, 0);        // O_DIRECT: the NVMe reads the CMB
//! ```
//!
//! Compared with the C path in `drivers/pci/p2pdma.c`, which inserts every page at
//! `mmap` time with `vm_insert_page()` (and so makes the VMA `VM_MIXEDMAP`):
//!
//! - `mmap` reserves the whole length from the device's pool (`ENOMEM` if it does not
//!   fit) in a [`vma::Map`] shared by every VMA made from the mapping (split, fork,
//!   mremap), and inserts nothing (per page it only checks that the page is clean);
//!   `fault` inserts one page, as a normal refcounted page behind a normal PTE, so GUP,
//!   GUP-fast and `O_DIRECT` see a real page;
//! - no mapping sees data of an earlier one, and no fault clears memory: pages are
//!   cleared when they come back from a mapping, in a worker, and `mmap` clears only
//!   the pages of its range not known to be clean ([`pool`]);
//! - a part of a mapping that no VMA maps any more (partial `munmap`, `mremap`
//!   shrink) goes back to the pool then, not with the rest: each VMA is filed in the
//!   device file's reverse map at its pages' frame numbers, so a closing VMA finds
//!   the parts of its range that no other VMA of the mapping (a split part, a fork's
//!   copy) still maps;
//! - after `MADV_DONTNEED` a page faults back in with its data;
//! - each VMA is moved onto a file of the device's inode on a pseudo file system
//!   ([`pseudofs`]), so unbinding the device can zap every mapping of it; the pages
//!   that were faulted in are then released after an RCU grace period ([`pool`]), so
//!   a GUP-fast walker that saw an old PTE never finds a page given to someone else,
//!   and nothing waits for that grace period; the others go back at once.
//!
//! Locks are taken in this order: the registry's device list, a device's map list,
//! a map's page state (a spinlock, never held while sleeping), a device's pool state
//! ([`pool::PoolState`], pages on their way back: a leaf spinlock; `mmap` sleeps on it,
//! killable and bounded, when the pool is short only because of such pages). The
//! fault path holds the mmap lock (or the VMA lock) and a read lock of the device's
//! SRCU, and takes only the map's page state, not across its page table update;
//! unbind waits for that SRCU between revoking the maps and zapping them. Nothing
//! here takes the mmap lock; a closing VMA takes its file's `i_mmap_rwsem` for reading
//! and no lock of this driver meanwhile.

use kernel::{pci::p2pdma, prelude::*};

mod pool;
mod pseudofs;
mod vma;

module! {
    type: P2pdmaRs,
    name: "p2pdma_rs",
    authors: ["p2pdma-rs developers"],
    description: "Rust implementation of the PCI P2PDMA p2pmem userspace mmap path",
    license: "GPL",
}

struct P2pdmaRs;

impl kernel::Module for P2pdmaRs {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        vma::init()?;
        p2pdma::register::<vma::P2pMem>()?;
        pr_info!("p2pmem mmap: Rust implementation registered\n");
        Ok(Self)
    }
}
