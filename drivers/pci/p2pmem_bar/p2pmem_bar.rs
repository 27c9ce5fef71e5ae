// SPDX-License-Identifier: GPL-2.0

//! Publish a memory BAR of any PCI device as p2pmem.
//!
//! ```sh
//! # QEMU's ivshmem (1af4:1110) binds by ID; any other device by driver_override:
//! echo p2pmem_bar > /sys/bus/pci/devices/0000:03:00.0/driver_override
//! echo 0000:03:00.0 > /sys/bus/pci/devices/0000:03:00.0/driver/unbind  # if bound
//! echo 0000:03:00.0 > /sys/bus/pci/drivers/p2pmem_bar/bind  # fails with probe's errno
//! cat /sys/bus/pci/devices/0000:03:00.0/p2pmem/size
//! fio --direct=1 --filename=/dev/nvme0n1 \
//!     --iomem=mmapshared:/sys/bus/pci/devices/0000:03:00.0/p2pmem/allocate ...
//! ```
//!
//! Only NVMe controllers with a controller memory buffer publish p2pmem in mainline,
//! through their own driver. This driver does it for any device whose BAR is plain
//! memory (an FPGA or SmartNIC BAR, switch-attached memory, QEMU's ivshmem backed by
//! host RAM): it checks the BAR and hands it to `pci_p2pdma_add_resource()`, so
//! `p2pmem/allocate` appears for the device and peers behind the same switch can DMA
//! to and from it. It does not touch the device otherwise; do not bind it to a device
//! whose BAR has side effects.
//!
//! Parameters (`modprobe p2pmem_bar bar=2`, or `p2pmem_bar.bar=2` on the kernel
//! command line when built in), for every device the driver binds:
//!
//! - `bar`: the BAR to use, 0 to 5; -1 (default) picks the largest 64-bit
//!   prefetchable memory BAR.
//! - `offset`: where p2pmem starts in the BAR, in bytes (default 0).
//! - `size`: how many bytes (default 0: up to the end of the BAR).
//! - `publish`: also offer the memory to in-kernel users such as the NVMe target
//!   (`pci_p2pmem_publish()`; default false).
//!
//! The physical start (BAR address plus `offset`) and `size` must be multiples of
//! 2 MiB, the granularity of ZONE_DEVICE memory hotplug. Probe fails, with a message
//! naming the device and saying what is wrong, with `EINVAL` for a `bar` out of range, an I/O BAR, a
//! misaligned or empty range or one that does not fit in the BAR; `ENXIO` for a BAR the
//! device does not implement or that has no address assigned; `ENODEV` if `bar=-1`
//! finds no 64-bit prefetchable memory BAR; `EBUSY` if the range already has device
//! struct pages (another provider registered it). Writing the device to the driver's
//! `bind` file returns that errno (`drivers_probe` does not).
//!
//! Unbinding (or unloading the module) zaps every user mapping of the device's p2pmem:
//! later accesses get `SIGBUS`. It waits for pages still in use by I/O in flight.

use kernel::{
    device::Core,
    pci::{
        self,
        p2pdma::{
            BarKind,
            MemBar,
            P2PMEM_ALIGN, //
        },
    },
    prelude::*,
};

/// The driver's per-device data: nothing, everything it registers is device-managed.
struct P2pmemBar;

/// QEMU's `ivshmem-plain` (and `ivshmem-doorbell`): BAR 2 is the shared memory.
const IVSHMEM_DEVICE_ID: u32 = 0x1110;

kernel::pci_device_table!(
    PCI_TABLE,
    <P2pmemBar as pci::Driver>::IdInfo,
    [(
        pci::DeviceId::from_id(pci::Vendor::REDHAT_QUMRANET, IVSHMEM_DEVICE_ID),
        ()
    )]
);

/// The range of the BAR to register, from the module parameters.
struct Choice {
    bar: MemBar,
    offset: u64,
    size: u64,
}

/// Picks the BAR: the one asked for, or the largest 64-bit prefetchable memory BAR.
fn choose_bar(pdev: &pci::Device<Core<'_>>) -> Result<MemBar> {
    let want = module_parameters::bar.value();
    if want >= 0 {
        // CAST: Non-negative and checked by `bar_kind()`.
        let index = want as u32;
        return match pdev.bar_kind(index) {
            Ok(BarKind::Mem(b)) => Ok(b),
            Ok(BarKind::Io) => {
                dev_err!(pdev, "bar={index} is an I/O BAR, not memory\n");
                Err(EINVAL)
            }
            Ok(BarKind::Unassigned) => {
                dev_err!(
                    pdev,
                    "bar={index}: the device has no such BAR, or it has no address\n"
                );
                Err(ENXIO)
            }
            Err(e) => {
                dev_err!(pdev, "bar={want}: a standard BAR is 0 to 5\n");
                Err(e)
            }
        };
    }
    if want != -1 {
        dev_err!(
            pdev,
            "bar={want}: a standard BAR is 0 to 5, or -1 for the largest\n"
        );
        return Err(EINVAL);
    }
    let mut best: Option<MemBar> = None;
    for index in 0..6 {
        if let Ok(BarKind::Mem(b)) = pdev.bar_kind(index) {
            if b.is_64bit() && b.is_prefetchable() && best.is_none_or(|x| b.size() > x.size()) {
                best = Some(b);
            }
        }
    }
    best.ok_or_else(|| {
        dev_err!(
            pdev,
            "no 64-bit prefetchable memory BAR; choose one with bar=\n"
        );
        ENODEV
    })
}

/// Checks `offset` and `size` against the BAR, so that a mistake gets a message that
/// says what is wrong (the abstraction only returns `EINVAL`).
fn choose(pdev: &pci::Device<Core<'_>>) -> Result<Choice> {
    let bar = choose_bar(pdev)?;
    let offset = module_parameters::offset.value();
    let size = match module_parameters::size.value() {
        0 => bar.size().saturating_sub(offset),
        s => s,
    };
    let index = bar.index();
    let fits = offset
        .checked_add(size)
        .is_some_and(|end| end <= bar.size());
    if !fits || size == 0 {
        dev_err!(
            pdev,
            "offset={offset:#x} size={size:#x}: does not fit in BAR {index} ({:#x} bytes)\n",
            bar.size()
        );
        return Err(EINVAL);
    }
    if (bar.start() + offset) % P2PMEM_ALIGN != 0 || size % P2PMEM_ALIGN != 0 {
        dev_err!(
            pdev,
            "BAR {index} at {:#x}, offset={offset:#x} size={size:#x}: start and size must be multiples of {:#x}\n",
            bar.start(),
            P2PMEM_ALIGN
        );
        return Err(EINVAL);
    }
    Ok(Choice { bar, offset, size })
}

impl pci::Driver for P2pmemBar {
    type IdInfo = ();
    type Data<'bound> = Self;
    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self, Error> + 'bound {
        let c = choose(pdev)?;
        let index = c.bar.index();
        // Undone when the driver unbinds, after the p2pmem is torn down.
        pdev.enable_device_managed()?;
        if let Err(e) = pdev.p2pdma_add_resource(&c.bar, c.offset, c.size) {
            if e == EBUSY {
                dev_err!(
                    pdev,
                    "BAR {index}: the range is p2pmem of another provider already\n"
                );
            } else {
                dev_err!(pdev, "BAR {index}: cannot register p2pmem: {e:?}\n");
            }
            return Err(e);
        }
        let publish = module_parameters::publish.value();
        pdev.p2pmem_publish(publish);
        dev_info!(
            pdev,
            "BAR {index}: {} MiB at offset {:#x} is p2pmem{}\n",
            c.size >> 20,
            c.offset,
            if publish { ", published" } else { "" }
        );
        Ok(P2pmemBar)
    }
}

kernel::module_pci_driver! {
    type: P2pmemBar,
    name: "p2pmem_bar",
    authors: ["p2pdma-rs developers"],
    description: "Publish a memory BAR of any PCI device as p2pmem",
    license: "GPL",
    params: {
        bar: i32 {
            default: -1,
            description: "BAR to publish (0-5); -1: the largest 64-bit prefetchable memory BAR",
        },
        offset: u64 {
            default: 0,
            description: "Offset of p2pmem in the BAR, bytes (2 MiB aligned)",
        },
        size: u64 {
            default: 0,
            description: "Bytes of p2pmem (multiple of 2 MiB); 0: to the end of the BAR",
        },
        publish: bool {
            default: false,
            description: "Offer the memory to in-kernel p2pmem users (pci_p2pmem_publish)",
        },
    },
}
