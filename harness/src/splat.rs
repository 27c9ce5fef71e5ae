// SPDX-License-Identifier: GPL-2.0
//! Kernel splat detection in a guest console log.
//!
//! Only kernel lines are judged (those with a `[ seconds]` printk timestamp; the
//! guest kernel has CONFIG_PRINTK_TIME), so test programs may print the word
//! "WARNING" without failing a run. Debug-kernel banners such as
//! `rcu: RCU lockdep checking is enabled.` are not splats.

/// One detected splat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splat {
    /// 1-based line number in the log.
    pub line: usize,
    pub kind: &'static str,
    pub text: String,
}

/// (kind, substring) pairs; the first match on a line wins.
const PATTERNS: &[(&str, &str)] = &[
    ("KASAN", "BUG: KASAN:"),
    ("KFENCE", "BUG: KFENCE:"),
    ("soft lockup", "BUG: soft lockup"),
    ("workqueue lockup", "BUG: workqueue lockup"),
    ("bad page", "BUG: Bad page"),
    ("sleep in atomic", "BUG: sleeping function called"),
    ("BUG", "BUG:"),
    ("BUG", "kernel BUG at"),
    ("lockdep", "WARNING: possible circular locking"),
    ("lockdep", "WARNING: possible recursive locking"),
    ("lockdep", "WARNING: inconsistent lock state"),
    ("lockdep", "WARNING: suspicious RCU usage"),
    ("lockdep", "DEBUG_LOCKS_WARN_ON"),
    ("WARN", "WARNING:"),
    ("Oops", "Oops:"),
    ("Oops", "general protection fault"),
    ("panic", "Kernel panic"),
    ("UBSAN", "UBSAN:"),
    ("hung task", "INFO: task "),
    ("hung task", "blocked for more than"),
    ("RCU stall", "rcu_sched detected stalls"),
    ("RCU stall", "rcu_preempt detected stalls"),
    ("RCU stall", "self-detected stall on CPU"),
    ("RCU stall", "detected stalls on CPUs/tasks"),
    ("kmemleak", "suspected memory leaks"),
    ("kmemleak", "unreferenced object 0x"),
    ("debugobjects", "ODEBUG:"),
    ("list corruption", "list_add corruption"),
    ("list corruption", "list_del corruption"),
    ("allocation failure", "page allocation failure"),
    ("Rust panic", "rust_kernel: panicked"),
    ("Rust panic", "panicked at"),
];

/// Returns `Some(body)` for a kernel log line (timestamped), `None` otherwise.
fn kernel_body(line: &str) -> Option<&str> {
    let l = line.trim_end_matches('\r');
    let rest = l.strip_prefix('[')?;
    let end = rest.find(']')?;
    let ts = rest[..end].trim();
    if ts.is_empty() || !ts.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    Some(rest[end + 1..].trim_start())
}

/// The markers `p2pmem_fault_test` writes to `/dev/kmsg` around the window in which
/// it makes allocations fail on purpose: the allocation failures the kernel reports
/// there are the injected ones. Every other splat still counts there.
const INJECTION_START: &str = "p2pdma-fault-injection: start";
const INJECTION_STOP: &str = "p2pdma-fault-injection: stop";

/// Finds every splat in `log`.
pub fn scan(log: &str) -> Vec<Splat> {
    let mut out = Vec::new();
    let mut injecting = false;
    for (i, line) in log.lines().enumerate() {
        let Some(body) = kernel_body(line) else { continue };
        if body.contains(INJECTION_START) {
            injecting = true;
        } else if body.contains(INJECTION_STOP) {
            injecting = false;
        }
        if let Some((kind, _)) = PATTERNS.iter().find(|(_, pat)| body.contains(pat)) {
            if injecting && *kind == "allocation failure" {
                continue;
            }
            out.push(Splat { line: i + 1, kind, text: body.to_string() });
        }
    }
    out
}

/// Taint flags that do not indicate a kernel problem: 'N' (TAINT_TEST, set when
/// KUnit runs).
const BENIGN_TAINT: u64 = 1 << 18;

/// Decodes `/proc/sys/kernel/tainted` into the letters the kernel prints, keeping
/// only flags that indicate a problem. Empty means clean.
pub fn bad_taint(value: u64) -> String {
    const LETTERS: &[u8] = b"PFSRMBUDAWCIOELKXTN";
    let v = value & !BENIGN_TAINT;
    (0..LETTERS.len()).filter(|b| v & (1 << b) != 0).map(|b| LETTERS[b] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_kind() {
        let log = "\
[    0.100000] rcu: RCU lockdep checking is enabled.
[    0.100001] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar
[    0.200000] KernelAddressSanitizer initialized (generic)
[    5.000000] ------------[ cut here ]------------
[    5.000001] WARNING: CPU: 1 PID: 77 at drivers/misc/lkdtm/bugs.c:110 lkdtm_WARNING+0x1/0x2
[    6.000000] BUG: KASAN: slab-use-after-free in foo+0x10/0x20
[    7.000000] WARNING: possible circular locking dependency detected
[    8.000000] INFO: task kworker/0:1:12 blocked for more than 30 seconds.
[    9.000000] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:
[   10.000000] kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)
[   11.000000] Oops: general protection fault, probably for non-canonical address
[   12.000000] BUG: kernel NULL pointer dereference, address: 0000000000000000
[   13.000000] watchdog: BUG: soft lockup - CPU#0 stuck for 26s! [a.out:99]
";
        let kinds: Vec<_> = scan(log).iter().map(|s| s.kind).collect();
        assert_eq!(kinds, ["WARN", "KASAN", "lockdep", "hung task", "RCU stall", "kmemleak", "Oops", "BUG", "soft lockup"]);
        assert_eq!(scan(log)[0].line, 5);
    }

    #[test]
    fn ignores_userspace_and_banners() {
        let log = "\
# WARNING: this is test output, not the kernel
BUG: printed by a test program
[    0.1] rcu: RCU lockdep checking is enabled.
[    0.2] Lock dependency validator: Copyright (c) 2006 Red Hat
[    0.3] Kernel command line: console=ttyS0 softlockup_panic=0
[    1.0] nvme nvme0: 2/0/0 default/read/poll queues
";
        assert!(scan(log).is_empty(), "{:?}", scan(log));
    }

    #[test]
    fn injected_allocation_failures_only_inside_the_window() {
        let log = "\
[    1.0] p2pmem_fault_t: page allocation failure: order:0, mode:0xcc0(GFP_KERNEL)
[    2.0] p2pdma-fault-injection: start
[    2.1] p2pmem_fault_t: page allocation failure: order:0, mode:0xcc0(GFP_KERNEL)
[    2.2] WARNING: CPU: 0 PID: 1 at mm/x.c:1 f+0x0/0x10
[    3.0] p2pdma-fault-injection: stop
[    4.0] p2pmem_fault_t: page allocation failure: order:0, mode:0xcc0(GFP_KERNEL)
";
        let kinds: Vec<(usize, &str)> = scan(log).iter().map(|s| (s.line, s.kind)).collect();
        assert_eq!(kinds, [(1, "allocation failure"), (4, "WARN"), (6, "allocation failure")]);
    }

    #[test]
    fn taint_letters() {
        assert_eq!(bad_taint(0), "");
        assert_eq!(bad_taint(1 << 18), "");
        assert_eq!(bad_taint((1 << 9) | (1 << 18)), "W");
        assert_eq!(bad_taint((1 << 7) | (1 << 14)), "DL");
    }
}
