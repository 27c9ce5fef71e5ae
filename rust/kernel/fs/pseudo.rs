// SPDX-License-Identifier: GPL-2.0

//! Pseudo file systems: kernel-internal inodes and files, as dma-buf and secretmem use.
//!
//! C headers: [`include/linux/pseudo_fs.h`](srctree/include/linux/pseudo_fs.h),
//! [`include/linux/file.h`](srctree/include/linux/file.h)
//!
//! A driver that maps memory into processes can give each object its own inode and
//! move the VMAs onto a file of that inode
//! ([`VmaNew::set_file`](crate::mm::virt::VmaNew::set_file)). The VMAs are then linked
//! into the inode's address_space, and [`zap_mappings`] removes every page table
//! entry of every process that maps the object, which is how a driver revokes the
//! memory of a device that goes away.
//!
//! A pseudo file system is mounted once and never unmounted: its files may be held by
//! any process's mappings long after the driver forgot them.
//!
//! # Examples
//!
//! ```ignore
//! struct MyFs;
//! impl PseudoFs for MyFs {
//!     const NAME: &'static CStr = c"myfs";
//!     const MAGIC: u32 = 0x4d594653;
//!     const DNAME_PREFIX: &'static CStr = c"myfs";
//! }
//! static MY_FS: PseudoFsType = PseudoFsType::new::<MyFs>();
//!
//! let mnt = MY_FS.mount()?;
//! let file = mnt.new_file(c"object0")?; // "/proc/<pid>/maps" shows "myfs:[object0]"
//! ```

use crate::{
    bindings,
    error::{code::*, from_err_ptr, Result},
    ffi::{c_char, c_int, c_ulong},
    fs::File,
    str::{as_char_ptr_in_const_context, CStr, CStrExt},
    sync::{
        aref::ARef,
        atomic::{Acquire, Atomic, Full},
    },
    types::Opaque,
};
use core::{marker::PhantomData, ptr::NonNull};

/// Describes a pseudo file system.
pub trait PseudoFs: 'static {
    /// Name of the file system type (it is never registered, so userspace cannot
    /// mount it).
    const NAME: &'static CStr;
    /// The `statfs()` magic number (`include/uapi/linux/magic.h`).
    const MAGIC: u32;
    /// Files are shown as `<DNAME_PREFIX>:[<file name>]` in `/proc/<pid>/maps`.
    const DNAME_PREFIX: &'static CStr;
}

struct Ops<T: PseudoFs>(PhantomData<T>);

impl<T: PseudoFs> Ops<T> {
    const DENTRY_OPS: bindings::dentry_operations = bindings::dentry_operations {
        d_dname: Some(Self::d_dname),
        ..pin_init::zeroed()
    };

    const FILE_OPS: bindings::file_operations = bindings::file_operations {
        // `msync(MS_SYNC)` on a mapping of the file succeeds, as it did on sysfs.
        fsync: Some(bindings::noop_fsync),
        ..pin_init::zeroed()
    };

    const fn dentry_ops() -> &'static bindings::dentry_operations {
        &Self::DENTRY_OPS
    }

    const fn file_ops() -> &'static bindings::file_operations {
        &Self::FILE_OPS
    }

    /// # Safety
    ///
    /// Called by the VFS for a dentry of this file system, `buf` of `len` bytes.
    unsafe extern "C" fn d_dname(
        dentry: *mut bindings::dentry,
        buf: *mut c_char,
        len: c_int,
    ) -> *mut c_char {
        // SAFETY: The dentry is valid for the call and its name is a NUL-terminated
        // string (set by `alloc_file_pseudo`); `dynamic_dname` formats into `buf`.
        unsafe {
            bindings::dynamic_dname(
                buf,
                len,
                c"%s:[%s]".as_char_ptr(),
                T::DNAME_PREFIX.as_char_ptr(),
                (*dentry).__bindgen_anon_1.d_name.name,
            )
        }
    }

    /// # Safety
    ///
    /// Called by the VFS to set up a new superblock's context.
    unsafe extern "C" fn init_fs_context(fc: *mut bindings::fs_context) -> c_int {
        // SAFETY: `fc` is valid for the call.
        let ctx = unsafe { bindings::init_pseudo(fc, T::MAGIC as c_ulong) };
        if ctx.is_null() {
            return ENOMEM.to_errno();
        }
        // SAFETY: `ctx` was just returned by `init_pseudo`; the dentry operations are
        // `'static`.
        unsafe { (*ctx).dops = Self::dentry_ops() };
        0
    }
}

/// A pseudo file system type, in static storage (the VFS keeps lockdep class keys in
/// `struct file_system_type`, which must not live on the heap).
///
/// # Invariants
///
/// `fstype` is a `file_system_type` whose `init_fs_context` sets up a pseudo file
/// system with the operations of one [`PseudoFs`] implementation.
pub struct PseudoFsType {
    fstype: Opaque<bindings::file_system_type>,
    file_ops: &'static bindings::file_operations,
    /// The mount, once made; never released.
    mnt: Atomic<*mut bindings::vfsmount>,
}

// SAFETY: The VFS serialises its own accesses to `file_system_type`; Rust code only
// passes its address.
unsafe impl Sync for PseudoFsType {}

impl PseudoFsType {
    /// Describes the file system `T`; put the result in a `static`.
    pub const fn new<T: PseudoFs>() -> Self {
        let mut fstype: bindings::file_system_type = pin_init::zeroed();
        fstype.name = as_char_ptr_in_const_context(T::NAME);
        fstype.init_fs_context = Some(Ops::<T>::init_fs_context);
        fstype.kill_sb = Some(bindings::kill_anon_super);
        // INVARIANT: set up for `T` just above.
        Self {
            fstype: Opaque::new(fstype),
            file_ops: Ops::<T>::file_ops(),
            mnt: Atomic::new(core::ptr::null_mut()),
        }
    }

    /// Mounts the file system (internally, `kern_mount()`) the first time it is
    /// called, and returns that mount every time. The mount is never undone: files of
    /// it may outlive every caller.
    pub fn mount(&'static self) -> Result<PseudoMount> {
        let mut mnt = self.mnt.load(Acquire);
        if mnt.is_null() {
            // SAFETY: `fstype` is a valid file system type in static storage.
            let new = from_err_ptr(unsafe { bindings::kern_mount(self.fstype.get()) })?;
            mnt = match self.mnt.cmpxchg(core::ptr::null_mut(), new, Full) {
                Ok(_) => new,
                Err(winner) => {
                    // SAFETY: `new` is our own, unused mount.
                    unsafe { bindings::kern_unmount(new) };
                    winner
                }
            };
        }
        // INVARIANT: `mnt` is the mount stored in `self.mnt`, never released.
        Ok(PseudoMount {
            ty: self,
            // `kern_mount` returned a valid pointer.
            mnt: NonNull::new(mnt).ok_or(ENOMEM)?,
        })
    }
}

/// A mounted pseudo file system.
///
/// # Invariants
///
/// `mnt` is a mount of `ty` that is never released.
pub struct PseudoMount {
    ty: &'static PseudoFsType,
    mnt: NonNull<bindings::vfsmount>,
}

// SAFETY: A `vfsmount` may be used from any thread.
unsafe impl Send for PseudoMount {}
// SAFETY: See above.
unsafe impl Sync for PseudoMount {}

impl PseudoMount {
    /// Creates a new inode and a file of it named `name`, open for read and write.
    ///
    /// The file is not installed in any file descriptor table.
    pub fn new_file(&self, name: &CStr) -> Result<ARef<File>> {
        // SAFETY: By the type invariant the mount is valid, so is its superblock.
        let inode =
            from_err_ptr(unsafe { bindings::alloc_anon_inode((*self.mnt.as_ptr()).mnt_sb) })?;
        // SAFETY: `inode` is a new inode of this mount; `alloc_file_pseudo` takes over
        // its reference on success. The file operations are `'static`.
        let file = unsafe {
            bindings::alloc_file_pseudo(
                inode,
                self.mnt.as_ptr(),
                name.as_char_ptr(),
                bindings::O_RDWR as c_int,
                self.ty.file_ops,
            )
        };
        let file = match from_err_ptr(file) {
            Ok(f) => f,
            Err(e) => {
                // SAFETY: On failure the inode reference is still ours.
                unsafe { bindings::iput(inode) };
                return Err(e);
            }
        };
        // SAFETY: `file` is a new file with one reference, which the `ARef` takes over.
        Ok(unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast::<File>())) })
    }
}

/// Removes every page table entry, in every process, that maps `file`'s
/// address_space (`unmap_mapping_range(mapping, 0, 0, 1)`).
///
/// Processes keep their VMAs; the next access faults again.
pub fn zap_mappings(file: &File) {
    // SAFETY: The file is valid, so is its `f_mapping`; `unmap_mapping_range` takes
    // the mapping's `i_mmap` lock and the page table locks itself.
    unsafe { bindings::unmap_mapping_range((*file.as_ptr()).f_mapping, 0, 0, 1) };
}

/// The `statfs()` magic number of the file system `file` lives on.
pub fn magic_of(file: &File) -> u64 {
    // SAFETY: A valid file has a valid inode and superblock.
    unsafe { (*(*(*file.as_ptr()).f_inode).i_sb).s_magic as u64 }
}

#[cfg(CONFIG_RUST_P2PDMA_KUNIT_TEST)]
#[macros::kunit_tests(rust_kernel_pseudo_fs)]
mod tests {
    use super::*;

    struct TestFs;

    impl PseudoFs for TestFs {
        const NAME: &'static CStr = c"rust_pseudo_test";
        const MAGIC: u32 = 0x52505354;
        const DNAME_PREFIX: &'static CStr = c"rust_pseudo_test";
    }

    static TEST_FS: PseudoFsType = PseudoFsType::new::<TestFs>();

    #[test]
    fn files_live_on_the_pseudo_fs() -> Result {
        let mnt = TEST_FS.mount()?;
        let a = mnt.new_file(c"a")?;
        let b = mnt.new_file(c"b")?;
        assert_eq!(magic_of(&a), 0x52505354);
        // One inode per file.
        // SAFETY: Both files are valid.
        let (ia, ib) = unsafe { ((*a.as_ptr()).f_inode, (*b.as_ptr()).f_inode) };
        assert!(ia != ib);
        // Nothing maps them: zapping is a no-op.
        zap_mappings(&a);
        Ok(())
    }
}
