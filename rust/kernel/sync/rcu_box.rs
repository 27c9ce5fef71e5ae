// SPDX-License-Identifier: GPL-2.0

//! Dropping a value after an RCU grace period, without waiting for it (`call_rcu()`).
//!
//! C header: [`include/linux/rcupdate.h`](srctree/include/linux/rcupdate.h)
//!
//! [`synchronize_rcu`](super::rcu::synchronize_rcu) blocks for a whole grace period,
//! which is too slow for paths that run once per object (closing a VMA at process
//! exit, say). An [`RcuBox`] owns its value and an `rcu_head`; handing it to
//! [`RcuBox::drop_after_grace_period`] returns at once, and the value is dropped once
//! every RCU read-side critical section that was running has ended.

use crate::{
    alloc::{AllocError, Flags, KBox},
    bindings,
    types::Opaque,
};
use core::{
    ops::{Deref, DerefMut},
    ptr,
};

#[repr(C)]
struct Inner<T> {
    // Must stay the first field: the callback recovers `Inner` from the head pointer.
    head: Opaque<bindings::callback_head>,
    value: T,
}

/// A heap allocation that can be dropped after an RCU grace period.
///
/// Allocate it when failure is still an option; [`RcuBox::drop_after_grace_period`]
/// itself cannot fail.
///
/// The deferred drop runs in softirq context: `T`'s destructor must not sleep.
///
/// # Examples
///
/// ```
/// use kernel::sync::rcu_box::RcuBox;
///
/// let b = RcuBox::new(42u32, GFP_KERNEL)?;
/// assert_eq!(*b, 42);
/// b.drop_after_grace_period();
/// # Ok::<(), Error>(())
/// ```
pub struct RcuBox<T: Send + 'static>(KBox<Inner<T>>);

// SAFETY: The `rcu_head` is only touched by `call_rcu()` once the box is given up, so an
// `RcuBox` is as thread-safe as the `T` it owns; the deferred drop of `T` happens on
// another CPU, which `T: Send` allows.
unsafe impl<T: Send + 'static> Send for RcuBox<T> {}
// SAFETY: `&RcuBox<T>` only gives out `&T`.
unsafe impl<T: Send + Sync + 'static> Sync for RcuBox<T> {}

impl<T: Send + 'static> RcuBox<T> {
    /// Allocates a box holding `value`.
    pub fn new(value: T, flags: Flags) -> Result<Self, AllocError> {
        Ok(Self(KBox::new(
            Inner {
                head: Opaque::uninit(),
                value,
            },
            flags,
        )?))
    }

    /// Drops the value once a grace period has elapsed: every RCU read-side critical
    /// section (including code running with interrupts or preemption disabled, such
    /// as GUP-fast) that started before this call has ended when the destructor runs.
    ///
    /// Returns at once. The destructor runs in softirq context.
    pub fn drop_after_grace_period(self) {
        let inner = KBox::into_raw(self.0);
        // SAFETY: `inner` is a valid, exclusively owned allocation; its `head` is not
        // queued (it is queued only here, and `self` is consumed). `callback::<T>`
        // turns it back into the `KBox` it came from.
        unsafe {
            bindings::call_rcu(
                Opaque::cast_into(ptr::addr_of!((*inner).head)),
                Some(Self::callback),
            )
        };
    }

    /// # Safety
    ///
    /// Called by RCU with the `head` queued by [`RcuBox::drop_after_grace_period`].
    unsafe extern "C" fn callback(head: *mut bindings::callback_head) {
        // SAFETY: `head` is the first field of a `#[repr(C)]` `Inner<T>` queued by
        // `drop_after_grace_period`, which gave up ownership of it to this callback.
        let inner = unsafe { KBox::from_raw(head.cast::<Inner<T>>()) };
        drop(inner);
    }
}

impl<T: Send + 'static> Deref for RcuBox<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0.value
    }
}

impl<T: Send + 'static> DerefMut for RcuBox<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0.value
    }
}

#[cfg(CONFIG_RUST_P2PDMA_KUNIT_TEST)]
#[macros::kunit_tests(rust_kernel_rcu_box)]
mod tests {
    use super::*;
    use crate::alloc::flags::GFP_KERNEL;
    use crate::sync::{
        atomic::{Atomic, Relaxed},
        rcu,
    };

    static DROPS: Atomic<u32> = Atomic::new(0);

    struct Counted;

    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Relaxed);
        }
    }

    #[test]
    fn not_dropped_inside_read_side_section() -> Result<(), AllocError> {
        DROPS.store(0, Relaxed);
        // Allocate first: the read-side section must not sleep.
        let b = RcuBox::new(Counted, GFP_KERNEL)?;
        let guard = rcu::read_lock();
        b.drop_after_grace_period();
        // A grace period cannot end while this CPU is in a read-side section.
        for _ in 0..1000 {
            core::hint::spin_loop();
        }
        assert_eq!(DROPS.load(Relaxed), 0);
        drop(guard);
        rcu::rcu_barrier();
        assert_eq!(DROPS.load(Relaxed), 1);
        Ok(())
    }

    #[test]
    fn many_deferred_drops() -> Result<(), AllocError> {
        DROPS.store(0, Relaxed);
        for _ in 0..100 {
            RcuBox::new(Counted, GFP_KERNEL)?.drop_after_grace_period();
        }
        rcu::rcu_barrier();
        assert_eq!(DROPS.load(Relaxed), 100);
        Ok(())
    }

    #[test]
    fn plain_drop_is_immediate() -> Result<(), AllocError> {
        DROPS.store(0, Relaxed);
        let mut b = RcuBox::new(Counted, GFP_KERNEL)?;
        let _: &mut Counted = &mut b;
        drop(b);
        assert_eq!(DROPS.load(Relaxed), 1);
        Ok(())
    }
}
