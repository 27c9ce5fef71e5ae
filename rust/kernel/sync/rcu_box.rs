// SPDX-License-Identifier: GPL-2.0

//! Dropping a value after an RCU grace period, without waiting for it.
//!
//! C header: [`include/linux/workqueue.h`](srctree/include/linux/workqueue.h)
//! (`queue_rcu_work()`)
//!
//! [`synchronize_rcu`](super::rcu::synchronize_rcu) blocks for a whole grace period,
//! which is too slow for paths that run once per object (closing a VMA at process
//! exit, say). An [`RcuBox`] owns its value and an `rcu_work`; handing it to
//! [`RcuBox::drop_after_grace_period`] returns at once, and the value is dropped in
//! process context (a worker of `system_dfl_long_wq`) once every RCU
//! read-side critical section that was running has ended. Unlike a `call_rcu()`
//! callback, which runs in softirq context, the destructor may sleep.

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
    // Must stay the first field, and `work` the first field of `rcu_work`: the worker
    // recovers `Inner` from the `work_struct` pointer.
    rwork: Opaque<bindings::rcu_work>,
    value: T,
}

/// A heap allocation that can be dropped after an RCU grace period.
///
/// Allocate it when failure is still an option; [`RcuBox::drop_after_grace_period`]
/// itself cannot fail.
///
/// The deferred drop runs in process context and may sleep, and may take long (the
/// workqueue is the one for long-running work).
///
/// The deferred drop runs code of the crate that instantiated `RcuBox<T>`. There is no
/// way yet for a loadable module to wait for its deferred drops before it is unloaded
/// (that needs a workqueue of its own to flush after `rcu_barrier()`); until there is,
/// use it from built-in code.
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

// SAFETY: The `rcu_work` is only touched by the workqueue once the box is given up, so
// an `RcuBox` is as thread-safe as the `T` it owns; the deferred drop of `T` happens
// in another thread, which `T: Send` allows.
unsafe impl<T: Send + 'static> Send for RcuBox<T> {}
// SAFETY: `&RcuBox<T>` only gives out `&T`.
unsafe impl<T: Send + Sync + 'static> Sync for RcuBox<T> {}

impl<T: Send + 'static> RcuBox<T> {
    /// Allocates a box holding `value`.
    pub fn new(value: T, flags: Flags) -> Result<Self, AllocError> {
        Ok(Self(KBox::new(
            Inner {
                rwork: Opaque::uninit(),
                value,
            },
            flags,
        )?))
    }

    /// Drops the value once a grace period has elapsed: every RCU read-side critical
    /// section (including code running with interrupts or preemption disabled, such
    /// as GUP-fast) that started before this call has ended when the destructor runs.
    ///
    /// Returns at once. The destructor runs in process context.
    pub fn drop_after_grace_period(self) {
        let inner = KBox::into_raw(self.0);
        // SAFETY: `inner` is a valid, exclusively owned allocation; its `rwork` is not
        // queued (it is initialised and queued only here, and `self` is consumed).
        // `worker::<T>` turns it back into the `KBox` it came from.
        unsafe {
            bindings::queue_rcu_work_dfl_long(
                Opaque::cast_into(ptr::addr_of!((*inner).rwork)),
                Some(Self::worker),
            )
        };
    }

    /// # Safety
    ///
    /// Called by the workqueue with the `work` of the `rcu_work` queued by
    /// [`RcuBox::drop_after_grace_period`].
    unsafe extern "C" fn worker(work: *mut bindings::work_struct) {
        // SAFETY: `work` is the first field of the `rcu_work` that is the first field of
        // a `#[repr(C)]` `Inner<T>` queued by `drop_after_grace_period`, which gave up
        // ownership of it to this function. The workqueue does not touch the work item
        // after calling its function.
        let inner = unsafe { KBox::from_raw(work.cast::<Inner<T>>()) };
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

    /// Waits (at most 10 s) until `n` values have been dropped.
    fn wait_for_drops(n: u32) -> bool {
        // The grace period has ended for everything queued so far once `rcu_barrier()`
        // returns; the drops then run from the workqueue.
        rcu::rcu_barrier();
        for _ in 0..1000 {
            if DROPS.load(Relaxed) == n {
                return true;
            }
            crate::time::delay::fsleep(crate::time::Delta::from_millis(10));
        }
        false
    }

    /// The destructor runs where it may sleep.
    struct Sleeps;

    impl Drop for Sleeps {
        fn drop(&mut self) {
            crate::task::might_sleep();
            crate::time::delay::fsleep(crate::time::Delta::from_micros(10));
            DROPS.fetch_add(1, Relaxed);
        }
    }

    #[test]
    fn destructor_may_sleep() -> Result<(), AllocError> {
        DROPS.store(0, Relaxed);
        RcuBox::new(Sleeps, GFP_KERNEL)?.drop_after_grace_period();
        assert!(wait_for_drops(1));
        Ok(())
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
        assert!(wait_for_drops(1));
        Ok(())
    }

    #[test]
    fn many_deferred_drops() -> Result<(), AllocError> {
        DROPS.store(0, Relaxed);
        for _ in 0..100 {
            RcuBox::new(Counted, GFP_KERNEL)?.drop_after_grace_period();
        }
        assert!(wait_for_drops(100));
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
