// SPDX-License-Identifier: GPL-2.0
//! Booting the guest under QEMU.
//!
//! The guest has a minimal initramfs, written by the kernel's `usr/gen_init_cpio`:
//! a static busybox and `guest/init.sh`. The init
//! mounts the host's root file system read-only over virtio-9p and chroots into it,
//! so fio, the shell and the test programs are the host's own binaries with their
//! libraries: no root file system image to build or keep in sync. A second 9p share,
//! read-write, is the boot's work folder: `run.sh` (what to do) in, results out.
//!
//! Why not virtme-ng: it is not packaged in Debian 12, and every boot here needs an
//! exact PCIe topology (a switch with two CMB-bearing NVMe, a third NVMe on its own
//! root port), a per-boot kernel command line and the raw serial console for splat
//! detection; the init that remains is about twenty lines of shell.

use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INIT: &str = include_str!("../guest/init.sh");
const BUSYBOX: &str = "/bin/busybox";

/// NVMe serial numbers the tests use to find the devices.
pub const SERIAL_A: &str = "p2p-a";
pub const SERIAL_B: &str = "p2p-b";
pub const SERIAL_LONE: &str = "p2p-lone";

/// Kinds of p2pmem provider the topology has, as the guest names them (the driver
/// that publishes the p2pmem): NVMe A's controller memory buffer, and the RAM-backed
/// ivshmem BAR published by `p2pmem_bar`. Every per-provider test runs on each.
pub const PROVIDER_KINDS: [&str; 2] = ["nvme", "p2pmem_bar"];

/// The kinds of provider the guest found (`results/providers.txt`, `<kind> <BDF>` per
/// line), and the first kind of [`PROVIDER_KINDS`] missing among them.
pub fn providers(results: &Path) -> (Vec<String>, Option<&'static str>) {
    let found: Vec<String> = fs::read_to_string(results.join("providers.txt"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    let missing = PROVIDER_KINDS.into_iter().find(|k| !found.iter().any(|p| p == k));
    (found, missing)
}

/// Test programs that run once per boot rather than once per provider.
pub const ONCE_PER_BOOT: [&str; 1] = ["p2pmem_bar_test"];

/// Size of the ivshmem memory backend (host RAM): a power of two, so the BAR is
/// naturally aligned, as p2pmem needs (2 MiB).
pub const IVSHMEM_MIB: u32 = 256;

/// The initramfs, as a `usr/gen_init_cpio` list: a static busybox and the init.
/// gen_init_cpio expands `${VAR}` in a location after splitting the line, so the
/// files' paths come from the environment and may contain spaces.
pub const INITRAMFS_LIST: &str = "\
dir /bin 0755 0 0
dir /dev 0755 0 0
dir /proc 0755 0 0
dir /sys 0755 0 0
dir /host 0755 0 0
file /bin/busybox ${P2PDMA_BUSYBOX} 0755 0 0
file /init ${P2PDMA_INIT} 0755 0 0
";

/// How to boot.
#[derive(Debug, Clone)]
pub struct Boot {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// Folder shared read-write with the guest as `/tmp/work`; holds `run.sh`.
    pub work: PathBuf,
    pub disks: PathBuf,
    pub cmdline: String,
    pub kvm: bool,
    pub memory_mib: u32,
    pub timeout: Duration,
    /// Test cases the guest will report (`ok`/`not ok` lines of its test
    /// programs), for progress; `None` when the boot runs no tests.
    pub cases: Option<u64>,
}

/// What came back from a boot.
#[derive(Debug)]
pub struct Outcome {
    pub console: PathBuf,
    pub qemu_stderr: PathBuf,
    /// The guest's `run.sh` finished and the guest powered off by itself.
    pub finished: bool,
    pub timed_out: bool,
    pub seconds: f64,
}

/// QEMU arguments for the harness topology: NVMe `p2p-a` and `p2p-b` with 64 MiB
/// CMBs and an `ivshmem-plain` device whose 256 MiB BAR is host RAM, behind one PCIe
/// switch, and `p2p-lone` (also with a CMB) on its own root port.
pub fn qemu_args(b: &Boot) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |s: &str| a.extend(s.split_whitespace().map(String::from));
    push("-M q35 -nodefaults -display none -no-reboot -monitor none -serial stdio");
    if b.kvm {
        push("-accel kvm -cpu host");
    } else {
        // la57=off: 4-level paging, as on most servers. With 5-level paging a KASAN
        // wild-memory-access was seen once in an interrupt during identify_cpu(),
        // before any driver runs (see the notes of the harness issue).
        push("-accel tcg,thread=multi -cpu max,la57=off");
    }
    push(&format!("-smp 2 -m {}", b.memory_mib));
    a.push("-kernel".into());
    a.push(b.kernel.display().to_string());
    a.push("-initrd".into());
    a.push(b.initramfs.display().to_string());
    a.push("-append".into());
    a.push(b.cmdline.clone());
    a.push("-virtfs".into());
    a.push("local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap".into());
    a.push("-virtfs".into());
    a.push(format!("local,path={},mount_tag=work,security_model=none,multidevs=remap", b.work.display()));
    let mut push = |s: String| a.extend(s.split_whitespace().map(String::from));
    push("-device pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1".into());
    push("-device x3130-upstream,id=sw1,bus=rp1".into());
    push("-device xio3130-downstream,id=dn1,bus=sw1,chassis=2,slot=0".into());
    push("-device xio3130-downstream,id=dn2,bus=sw1,chassis=3,slot=1".into());
    push("-device pcie-root-port,id=rp2,bus=pcie.0,chassis=4,slot=2".into());
    // A RAM-backed BAR behind the same switch: p2pmem that is not emulated MMIO.
    push("-device xio3130-downstream,id=dn3,bus=sw1,chassis=5,slot=2".into());
    push(format!("-object memory-backend-ram,id=ivmem,size={IVSHMEM_MIB}M,share=on"));
    push("-device ivshmem-plain,memdev=ivmem,bus=dn3".into());
    for (serial, bus) in [(SERIAL_A, "dn1"), (SERIAL_B, "dn2"), (SERIAL_LONE, "rp2")] {
        let img = b.disks.join(format!("{serial}.img"));
        push(format!("-drive file={},if=none,id=d-{serial},format=raw,cache=unsafe", img.display()));
        push(format!("-device nvme,serial={serial},drive=d-{serial},bus={bus},cmb_size_mb=64"));
    }
    a
}

/// Creates the NVMe backing files (sparse, 512 MiB) if missing.
pub fn ensure_disks(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir)?;
    for s in [SERIAL_A, SERIAL_B, SERIAL_LONE] {
        let p = dir.join(format!("{s}.img"));
        if !p.exists() {
            let f = fs::File::create(&p)?;
            f.set_len(512 << 20)?;
        }
    }
    Ok(())
}

/// Writes the initramfs (uncompressed newc cpio) with the kernel's own
/// `gen_init_cpio`, replacing `path` only when its contents changed. The init is
/// written beside it as `<path>.init`.
pub fn ensure_initramfs(path: &Path, gen_init_cpio: &Path) -> Result<()> {
    if !Path::new(BUSYBOX).is_file() {
        bail!("{BUSYBOX} is missing: install busybox-static (run scripts/bootstrap as root)");
    }
    let init = path.with_extension("init");
    if fs::read(&init).ok().as_deref() != Some(INIT.as_bytes()) {
        fs::write(&init, INIT)?;
    }
    let tmp = path.with_extension("cpio.tmp");
    let mut cmd = Command::new(gen_init_cpio);
    // -t 0: every mtime 0, so the same contents give the same bytes.
    cmd.args(["-t", "0", "-o"]).arg(&tmp).arg("-").env("P2PDMA_BUSYBOX", BUSYBOX).env("P2PDMA_INIT", &init);
    crate::util::run_with_input(cmd, INITRAMFS_LIST).context("building the initramfs with gen_init_cpio")?;
    if fs::read(path).ok() != fs::read(&tmp).ok() {
        fs::rename(&tmp, path)?;
    } else {
        fs::remove_file(&tmp)?;
    }
    Ok(())
}

/// Checks that `--kvm` can work: `/dev/kvm` exists and opens read-write.
pub fn check_kvm() -> Result<()> {
    check_kvm_at(Path::new("/dev/kvm"))
}

fn check_kvm_at(dev: &Path) -> Result<()> {
    match fs::OpenOptions::new().read(true).write(true).open(dev) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "--kvm: {} does not exist (no hardware virtualization here, or the kvm_intel/kvm_amd module is not loaded): drop --kvm to use TCG, the default",
            dev.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            bail!("--kvm: no permission to open {} (run as root or join group kvm), or drop --kvm to use TCG, the default", dev.display())
        }
        Err(e) => bail!("--kvm: {} does not open ({e}): drop --kvm to use TCG, the default", dev.display()),
    }
}

/// Lines of the console worth echoing live.
fn interesting(line: &str) -> bool {
    let l = crate::tap::strip_kernel_prefix(line);
    l.starts_with("harness:") || l.starts_with("ok ") || l.starts_with("not ok ") || l.starts_with("demo:")
}

/// Counts the guest's test cases as their results arrive on the console: top-level
/// `ok`/`not ok` lines once the guest's run has started (`harness: running ...`),
/// so the KUnit results printed at boot are not counted.
#[derive(Debug, Default)]
pub struct CaseCounter {
    running: bool,
    pub done: u64,
}

/// What [`CaseCounter::feed`] saw in a console line.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    /// A case's result.
    Case,
    /// The guest starting a test program (`harness: running <what>`): `<what>`.
    Running(&'a str),
    /// Anything else.
    Other,
}

impl CaseCounter {
    /// Feeds one console line; returns what it was.
    pub fn feed<'a>(&mut self, line: &'a str) -> Seen<'a> {
        let l = crate::tap::strip_kernel_prefix(line);
        if let Some(what) = l.strip_prefix("harness: running") {
            self.running = true;
            return Seen::Running(what.trim_start());
        }
        if self.running && (l.starts_with("ok ") || l.starts_with("not ok ")) {
            self.done += 1;
            return Seen::Case;
        }
        Seen::Other
    }
}

/// Boots, streams the console into `work/console.log`, and waits for power-off or
/// the timeout.
pub fn boot(b: &Boot) -> Result<Outcome> {
    let console = b.work.join("console.log");
    let qemu_stderr = b.work.join("qemu-stderr.log");
    let mut log = fs::File::create(&console)?;
    let mut child = Command::new("qemu-system-x86_64")
        .args(qemu_args(b))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&qemu_stderr)?)
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(crate::util::missing_tool("qemu-system-x86_64")),
            _ => anyhow::Error::new(e).context("starting qemu-system-x86_64"),
        })?;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut buf = Vec::new();
        while let Ok(n) = r.read_until(b'\n', &mut buf) {
            if n == 0 {
                break;
            }
            let _ = tx.send(String::from_utf8_lossy(&buf).trim_end_matches('\n').to_string());
            buf.clear();
        }
    });
    let start = Instant::now();
    let mut timed_out = false;
    let mut progress = b.cases.map(|n| crate::util::Progress::new("test", "cases", Some(n)));
    let mut cases = CaseCounter::default();
    let mut last_tick = Instant::now();
    // Host-side time of every case (the guest's console has no clock on
    // userspace lines): where a boot spends its minutes.
    let mut times = fs::File::create(b.work.join("case-times.txt"))?;
    let mut slowest: Vec<(f64, String)> = Vec::new();
    let mut mark = Instant::now();
    let mut running = String::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                writeln!(log, "{line}")?;
                let seen = cases.feed(&line);
                let is_case = seen == Seen::Case;
                let l = crate::tap::strip_kernel_prefix(&line);
                if seen != Seen::Other {
                    let took = mark.elapsed().as_secs_f64();
                    writeln!(times, "{:8.1} {took:7.1}  {l}", start.elapsed().as_secs_f64())?;
                    match seen {
                        Seen::Running(what) => running = what.to_string(),
                        _ => slowest.push((took, format!("{l} ({running})"))),
                    }
                    mark = Instant::now();
                }
                if interesting(&line) {
                    match (&mut progress, b.cases) {
                        (Some(p), Some(total)) => {
                            p.println(&format!("    | {}{l}", if is_case { format!("[{}/{total}] ", cases.done) } else { String::new() }));
                            p.set(cases.done, "");
                        }
                        _ => println!("    | {l}"),
                    }
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
            Err(_) => {}
        }
        if let Some(p) = &mut progress {
            if last_tick.elapsed() >= Duration::from_secs(1) {
                last_tick = Instant::now();
                p.set(cases.done, "");
            }
        }
        if child.try_wait()?.is_some() {
            // Drain what is left.
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                writeln!(log, "{line}")?;
            }
            break;
        }
        if start.elapsed() > b.timeout {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            writeln!(log, "harness: guest killed after {} s (timeout)", b.timeout.as_secs())?;
            break;
        }
    }
    if let Some(p) = progress {
        p.finish();
    }
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (took, l) in slowest.iter().take(5) {
        println!("    slowest: {took:6.1} s  {l}");
    }
    let finished = !timed_out && b.work.join("results/done").exists();
    Ok(Outcome { console, qemu_stderr, finished, timed_out, seconds: start.elapsed().as_secs_f64() })
}

/// Checks that a boot produced its results; returns an error naming what happened.
pub fn require_finished(o: &Outcome) -> Result<()> {
    if o.timed_out {
        bail!("the guest did not finish in time (hang?): see {}", o.console.display());
    }
    if !o.finished {
        bail!("the guest stopped before its run finished (crash or panic?): see {}", o.console.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initramfs_contents() {
        let names: Vec<&str> = INITRAMFS_LIST.lines().map(|l| l.split_whitespace().nth(1).unwrap()).collect();
        assert_eq!(names, ["/bin", "/dev", "/proc", "/sys", "/host", "/bin/busybox", "/init"]);
        // gen_init_cpio reads each line with sscanf("%s"): one word per field.
        for l in INITRAMFS_LIST.lines() {
            let n = l.split_whitespace().count();
            assert_eq!(n, if l.starts_with("file") { 6 } else { 5 }, "{l}");
        }
    }

    /// Builds the initramfs with the cached kernel tree's gen_init_cpio, when there
    /// is one, and reads it back with Debian's cpio.
    #[test]
    fn initramfs_with_gen_init_cpio() {
        let Some(home) = std::env::var_os("HOME") else { return };
        let src = Path::new(&home).join(".cache/p2pdma-rs/linux/usr/gen_init_cpio.c");
        let tools = ["/usr/bin/cc", "/usr/bin/cpio", BUSYBOX];
        if !src.is_file() || tools.iter().any(|t| !Path::new(t).exists()) {
            eprintln!("skipped: no kernel tree in the cache, or no cc/cpio/busybox");
            return;
        }
        let dir = std::env::temp_dir().join(format!("initramfs test {}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let gen = dir.join("gen_init_cpio");
        crate::util::run(Command::new("cc").arg("-o").arg(&gen).arg(&src)).unwrap();
        let img = dir.join("initramfs.cpio");
        ensure_initramfs(&img, &gen).unwrap();
        let first = fs::read(&img).unwrap();
        ensure_initramfs(&img, &gen).unwrap();
        assert_eq!(first, fs::read(&img).unwrap(), "same contents, same bytes");
        let list = crate::util::run_capture(Command::new("cpio").args(["-it", "--quiet", "-F"]).arg(&img)).unwrap();
        assert_eq!(list.lines().collect::<Vec<_>>(), ["bin", "dev", "proc", "sys", "host", "bin/busybox", "init"]);
        let x = dir.join("x");
        fs::create_dir_all(&x).unwrap();
        crate::util::run(Command::new("cpio").args(["-id", "--quiet", "-F"]).arg(&img).arg("init").current_dir(&x)).unwrap();
        assert_eq!(fs::read_to_string(x.join("init")).unwrap(), INIT);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kvm_errors_say_what_to_do() {
        let e = check_kvm_at(Path::new("/nonexistent/kvm")).unwrap_err().to_string();
        assert!(e.starts_with("--kvm: /nonexistent/kvm does not exist") && e.ends_with("drop --kvm to use TCG, the default"), "{e}");
        // A device that exists but is not KVM still opens: only the error paths are checked.
        let e = check_kvm_at(Path::new("/")).unwrap_err().to_string();
        assert!(e.contains("drop --kvm to use TCG"), "{e}");
    }

    #[test]
    fn counts_cases_of_the_run_only() {
        let mut c = CaseCounter::default();
        let console = "[    1.0] KTAP version 1\n[    1.1]     ok 1 genalloc_alloc\n[    1.2] ok 1 genalloc\n\
                       harness: running p2pmem_test\nTAP version 13\n1..2\nok 1 p2pmem.mmap_rw\n# ok 2 not a result\n\
                       not ok 2 p2pmem.fork_shared\n[   50.0] ok 3 p2pmem.x # SKIP no CMB\n";
        let results: Vec<Seen<'_>> = console.lines().map(|l| c.feed(l)).collect();
        assert_eq!(c.done, 3);
        assert_eq!(results.iter().filter(|r| **r == Seen::Case).count(), 3);
        assert_eq!(results[2], Seen::Other, "KUnit's result at boot is not a case of the run");
        assert_eq!(results[3], Seen::Running("p2pmem_test"));
    }

    #[test]
    fn topology() {
        let b = Boot {
            kernel: "/k".into(),
            initramfs: "/i".into(),
            work: "/w".into(),
            disks: "/d".into(),
            cmdline: "console=ttyS0 p2pdma.impl=c".into(),
            kvm: false,
            memory_mib: 4096,
            timeout: Duration::from_secs(1),
            cases: None,
        };
        let a = qemu_args(&b).join(" ");
        assert!(a.contains("-accel tcg"));
        assert!(a.contains("serial=p2p-a,drive=d-p2p-a,bus=dn1,cmb_size_mb=64"));
        assert!(a.contains("serial=p2p-b,drive=d-p2p-b,bus=dn2,cmb_size_mb=64"));
        assert!(a.contains("serial=p2p-lone,drive=d-p2p-lone,bus=rp2"));
        assert!(a.contains("x3130-upstream,id=sw1,bus=rp1"));
        let args = qemu_args(&b);
        let i = args.iter().position(|x| x == "-append").unwrap();
        assert_eq!(args[i + 1], "console=ttyS0 p2pdma.impl=c");
    }
}
