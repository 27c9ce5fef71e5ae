// SPDX-License-Identifier: GPL-2.0

//! The `p2pmem` pseudo file system: one inode per device.
//!
//! `mmap` moves each VMA onto the device's file, so the VMA is linked into that
//! inode's address_space and unbind can zap every mapping of the device at once.
//! Users see `p2pmem:[<BDF>]` in `/proc/<pid>/maps`.

use kernel::{
    fs::{
        pseudo::{self, PseudoFs, PseudoFsType, PseudoMount},
        File,
    },
    pci,
    prelude::*,
    sync::aref::ARef,
    uapi,
};

struct P2pMemFs;

impl PseudoFs for P2pMemFs {
    const NAME: &'static CStr = c"p2pmem";
    const MAGIC: u32 = uapi::P2PDMA_MAGIC;
    const DNAME_PREFIX: &'static CStr = c"p2pmem";
}

static P2PMEM_FS: PseudoFsType = PseudoFsType::new::<P2pMemFs>();

/// The mounted file system.
pub(crate) struct P2pMemMount(PseudoMount);

impl P2pMemMount {
    pub(crate) fn new() -> Result<Self> {
        Ok(Self(P2PMEM_FS.mount()?))
    }

    /// A new inode and file for `pdev`, named after its PCI address.
    pub(crate) fn device_file(&self, pdev: &pci::Device) -> Result<ARef<File>> {
        let dev: &kernel::device::Device = pdev.as_ref();
        self.0.new_file(dev.name())
    }
}

/// Removes every user PTE that maps the device's file.
pub(crate) fn zap(file: &File) {
    pseudo::zap_mappings(file);
}
