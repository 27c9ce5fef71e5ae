// SPDX-License-Identifier: GPL-2.0
//! Kernel source, build tree and build.
//!
//! Layout of the cache (default `~/.cache/p2pdma-rs`, or `$P2PDMA_CACHE`):
//!
//! - `src/linux-source-7.3_*.deb`: the Debian package, fetched and verified by apt;
//! - `linux/`: the source tree, a git repository whose tag `pristine` is the unpacked
//!   package; the harness checks out "pristine + patches/" into it, rewriting
//!   only the files whose content changed, so make rebuilds only those;
//! - `series/`: a git worktree of `linux/` on branch `p2pdma-rs`, pristine with
//!   `patches/` applied as commits, where the series is edited (`./run series edit`,
//!   `./run series export`);
//! - `series-check/` and `out/series/`: the tree and `O=` directory in which
//!   `./run series` builds every patch;
//! - `out/<profile>/`: one `O=` build directory per kernel profile (`base`, `debug`).

use crate::util::{self, run, run_capture};
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub const LLVM: &str = "LLVM=-19";

/// Top-level kernel directories. The kernel change lives only in `patches/` (one
/// source of truth: what is tested is what is sent); a repository file under one of
/// these would be a second copy, and is refused.
const KERNEL_DIRS: &[&str] =
    &["Documentation", "arch", "block", "drivers", "fs", "include", "kernel", "lib", "mm", "rust", "samples", "tools"];

/// A kernel profile: which fragments make its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Small server kernel for the demo and benchmarks.
    Base,
    /// Base plus KASAN, lockdep, DEBUG_VM, ... for the tests.
    Debug,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Base => "base",
            Profile::Debug => "debug",
        }
    }

    pub fn fragments(self) -> &'static [&'static str] {
        match self {
            Profile::Base => &["kconfig/base.config"],
            Profile::Debug => &["kconfig/base.config", "kconfig/debug.config"],
        }
    }
}

/// Paths the harness works with.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The project repository.
    pub repo: PathBuf,
    pub cache: PathBuf,
}

impl Paths {
    pub fn tree(&self) -> PathBuf {
        self.cache.join("linux")
    }
    pub fn out(&self, p: Profile) -> PathBuf {
        self.cache.join("out").join(p.name())
    }
    pub fn bzimage(&self, p: Profile) -> PathBuf {
        self.out(p).join("arch/x86/boot/bzImage")
    }
}

/// Environment for kernel builds: rustup's toolchain and cargo-installed bindgen on PATH.
pub fn build_env(cmd: &mut Command) {
    cmd.env("PATH", util::tool_path());
    cmd.env("LIBCLANG_PATH", "/usr/lib/llvm-19/lib");
}

/// Programs a kernel build runs (`LLVM=-19`, Rust): checked before anything starts,
/// so a missing one is one line, not a make error after minutes.
pub const BUILD_TOOLS: &[&str] = &[
    "make",
    "git",
    "cc",
    "flex",
    "bison",
    "bc",
    "perl",
    "clang-19",
    "ld.lld-19",
    "llvm-ar-19",
    "llvm-nm-19",
    "llvm-objcopy-19",
    "llvm-strip-19",
    "rustc",
    "bindgen",
    "apt-get",
    "dpkg-deb",
    "tar",
    "xz",
];

/// Space a fetch needs in the cache: the package (170 MB), and the tree with its
/// git objects (2.6 GB right after the fetch), with a margin.
const FETCH_BYTES: u64 = 4_000_000_000;

/// Space a build from scratch of each profile needs in its `O=` tree, with a
/// margin (the debug tree was 810 MB after its first build; base is smaller);
/// an incremental build needs far less.
fn build_bytes(profile: Profile, from_scratch: bool) -> u64 {
    match (profile, from_scratch) {
        (_, false) => 500_000_000,
        (Profile::Base, true) => BUILD_BYTES_BASE,
        (Profile::Debug, true) => BUILD_BYTES_DEBUG,
    }
}
const BUILD_BYTES_BASE: u64 = 1_500_000_000;
const BUILD_BYTES_DEBUG: u64 = 2_000_000_000;

/// Checks, before a build, that the cache has room for what is still to do.
pub fn check_space(paths: &Paths, profile: Profile) -> Result<()> {
    let fetched = paths.tree().join(".git").exists();
    let from_scratch = !paths.out(profile).join("vmlinux").exists();
    let need = if fetched { 0 } else { FETCH_BYTES } + build_bytes(profile, from_scratch);
    let what = format!(
        "{}{} {} kernel build",
        if fetched { "" } else { "the kernel source and " },
        if from_scratch { "a from-scratch" } else { "an incremental" },
        profile.name()
    );
    util::require_space(&paths.cache, need, &what)
}

/// A one-line hint for a failed build, from its log.
pub fn build_failure_hint(log: &str) -> Option<String> {
    for l in log.lines().rev() {
        if l.contains("is not clean, please run 'make mrproper'") || l.contains("is not clean, please run 'make ARCH") {
            return Some("the source tree has in-tree build output: run 'make -C <cache>/linux mrproper' (the O= trees are kept)".into());
        }
        if l.contains("No space left on device") {
            return Some("disk full: free some space in the cache, or set P2PDMA_CACHE to a disk with room".into());
        }
        for tail in [": Command not found", ": command not found", ": not found"] {
            if let Some(head) = l.strip_suffix(tail) {
                let prog = head.rsplit([' ', ':']).next().unwrap_or(head);
                if !prog.is_empty() {
                    return Some(util::missing_tool(prog));
                }
            }
        }
    }
    None
}

/// Step 1: make sure `linux/` holds the pristine Debian source, tagged `pristine`.
pub fn fetch(paths: &Paths) -> Result<()> {
    let tree = paths.tree();
    if tree.join(".git").exists()
        && run_capture(Command::new("git").arg("-C").arg(&tree).args(["rev-parse", "-q", "--verify", "refs/tags/pristine"])).is_ok()
    {
        return Ok(());
    }
    let src = paths.cache.join("src");
    fs::create_dir_all(&src)?;
    util::require_space(&paths.cache, FETCH_BYTES, "fetching and unpacking the kernel source")?;
    let deb = find_deb(&src)?;
    let deb = match deb {
        Some(d) => d,
        None => {
            util::step("fetch", "apt-get download linux-source-7.3 (signature and hash checked by apt)");
            run(Command::new("apt-get").args(["download", "linux-source-7.3"]).current_dir(&src))?;
            find_deb(&src)?.context("apt-get download left no linux-source-7.3 .deb")?
        }
    };
    // Debian's own integrity check of the package's contents, on top of apt's.
    let staging = paths.cache.join("linux.tmp");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    util::step("fetch", &format!("unpacking {}", deb.display()));
    run(Command::new("sh").arg("-c").arg(format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -xO ./usr/src/linux-source-7.3.tar.xz | tar -xJ -C '{}'",
        deb.display(),
        staging.display()
    )))?;
    let unpacked = staging.join("linux-source-7.3");
    let makefile = fs::read_to_string(unpacked.join("Makefile")).context("unpacked tree has no Makefile")?;
    if !makefile.contains("\nVERSION = 7\n") || !makefile.contains("\nPATCHLEVEL = 3\n") {
        bail!("the unpacked source is not Linux 7.3");
    }
    // Debian's tarball ignores everything at the top level; drop that block so the
    // tree can be tracked.
    let gi = unpacked.join(".gitignore");
    let text = fs::read_to_string(&gi)?;
    if let Some(i) = text.find("#\n# Debian packaging: ignore everything") {
        fs::write(&gi, &text[..i])?;
    }
    util::step("fetch", "recording the pristine tree (git, about a minute)");
    let git = |args: &[&str]| run(Command::new("git").arg("-C").arg(&unpacked).args(args));
    git(&["init", "-q", "-b", "linux-7.3"])?;
    git(&["add", "-A"])?;
    git(&["-c", "user.name=p2pdma-harness", "-c", "user.email=harness@localhost", "commit", "-q", "-m", "linux-source-7.3 (pristine)"])?;
    git(&["tag", "pristine"])?;
    let _ = fs::remove_dir_all(&tree);
    fs::rename(&unpacked, &tree)?;
    let _ = fs::remove_dir_all(&staging);
    Ok(())
}

fn find_deb(dir: &Path) -> Result<Option<PathBuf>> {
    let mut debs: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("linux-source-7.3_") && n.ends_with(".deb")
        })
        .collect();
    debs.sort();
    Ok(debs.pop())
}

/// Fails if the repository holds files at kernel paths outside `patches/`.
fn check_no_kernel_files(repo: &Path) -> Result<()> {
    for d in KERNEL_DIRS {
        if repo.join(d).exists() {
            bail!(
                "{}/{d}: kernel files belong in patches/ (./run series edit, commit, ./run series export), not next to them",
                repo.display()
            );
        }
    }
    Ok(())
}

/// The repository's patches, in order.
pub fn patch_files(repo: &Path) -> Result<Vec<PathBuf>> {
    let dir = repo.join("patches");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut v: Vec<PathBuf> =
        fs::read_dir(&dir)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "patch")).collect();
    v.sort();
    Ok(v)
}

/// Step 2: check out pristine + patches into the tree, touching only
/// files whose content changed. Returns the git tree id of the result.
pub fn prepare(paths: &Paths) -> Result<String> {
    let tree = paths.tree();
    let lock = tree.join(".git/index.lock");
    if lock.exists() {
        bail!(
            "stale git lock {}: a git command in the build tree was interrupted (or another ./run is preparing it); if no other ./run is running, remove the file",
            lock.display()
        );
    }
    let index = paths.cache.join("prepare.index");
    let _ = fs::remove_file(&index);
    let git = || {
        let mut c = Command::new("git");
        c.arg("-C").arg(&tree).env("GIT_INDEX_FILE", &index);
        c
    };
    check_no_kernel_files(&paths.repo)?;
    run(git().args(["read-tree", "refs/tags/pristine"]))?;
    for p in patch_files(&paths.repo)? {
        run(git().args(["apply", "--cached", "--whitespace=nowarn"]).arg(&p))
            .with_context(|| format!("patch {} does not apply to linux 7.3", p.display()))?;
    }
    let id = run_capture(git().args(["write-tree"]))?.trim().to_string();
    // Two-way merge from what is checked out now to the new tree: git rewrites
    // only the paths that differ. If someone edited the tree by hand, reset it.
    let plain = || {
        let mut c = Command::new("git");
        c.arg("-C").arg(&tree);
        c
    };
    if run_capture(plain().args(["read-tree", "-m", "-u"]).arg(&id)).is_err() {
        util::step("prepare", "build tree was modified by hand: resetting it");
        run(plain().args(["read-tree", "--reset", "-u"]).arg(&id))?;
    }
    let _ = fs::remove_file(&index);
    Ok(id)
}

/// Step 3: `tinyconfig` + fragments, then check every requested symbol.
/// Skipped when neither the fragments nor the tree changed since the last run.
pub fn configure(paths: &Paths, profile: Profile, tree_id: &str) -> Result<()> {
    let out = paths.out(profile);
    fs::create_dir_all(&out)?;
    let frags: Vec<PathBuf> = profile.fragments().iter().map(|f| paths.repo.join(f)).collect();
    let mut stamp = format!("tree {tree_id}\n");
    let mut requested = std::collections::BTreeMap::new();
    for f in &frags {
        let text = fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        stamp.push_str(&text);
        requested.extend(crate::kconfig::parse(&text));
    }
    let stamp_file = out.join(".p2pdma-config-stamp");
    if out.join(".config").exists() && fs::read_to_string(&stamp_file).ok().as_deref() == Some(&stamp) {
        return Ok(());
    }
    util::step("config", &format!("{}: tinyconfig + {}", profile.name(), profile.fragments().join(" + ")));
    let tree = paths.tree();
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.arg("-C").arg(&tree).arg(format!("O={}", out.display())).arg(LLVM).args(args);
        build_env(&mut c);
        c
    };
    run(&mut make(&["-s", "tinyconfig"]))?;
    merge_config(&tree, &out, &out.join(".config"), &frags)?;
    let have = crate::kconfig::parse(&fs::read_to_string(out.join(".config"))?);
    let bad = crate::kconfig::mismatches(&requested, &have);
    if !bad.is_empty() {
        for b in &bad {
            eprintln!("  config: {b}");
        }
        bail!("{} requested config symbol(s) did not take effect (unmet dependencies?)", bad.len());
    }
    fs::write(&stamp_file, stamp)?;
    Ok(())
}

/// Merges the fragments `frags` onto the config `base` into `out/.config` with
/// `merge_config.sh -m`, then completes it with `make olddefconfig`: the config step
/// of the test kernels and of the series' per-patch builds. Returns what both printed.
pub fn merge_config(tree: &Path, out: &Path, base: &Path, frags: &[PathBuf]) -> Result<String> {
    let mut merge = Command::new(tree.join("scripts/kconfig/merge_config.sh"));
    merge.current_dir(tree).arg("-m").arg("-O").arg(out).arg(base).args(frags);
    let mut text = run_capture(&mut merge)?;
    let mut old = Command::new("make");
    old.arg("-C").arg(tree).arg(format!("O={}", out.display())).arg(LLVM).args(["-s", "olddefconfig"]);
    build_env(&mut old);
    text.push_str(&run_capture(&mut old)?);
    Ok(text)
}

/// Whether the configured kernel has `CONFIG_<sym>=y`.
pub fn config_has(paths: &Paths, profile: Profile, sym: &str) -> bool {
    fs::read_to_string(paths.out(profile).join(".config"))
        .map(|c| crate::kconfig::parse(&c).get(sym) == Some(&crate::kconfig::Value::Set("y".into())))
        .unwrap_or(false)
}

/// Steps of a from-scratch build of each profile, used for the ETA until a build
/// on this machine has recorded its own count. Debug: 2056, measured on
/// 2026-12-02 (`bzImage modules`, Linux 7.3.4 with this repository at 538c992);
/// base: 1647, measured the same day at b79ca34.
fn scratch_steps(profile: Profile) -> u64 {
    match profile {
        Profile::Base => SCRATCH_STEPS_BASE,
        Profile::Debug => SCRATCH_STEPS_DEBUG,
    }
}
const SCRATCH_STEPS_BASE: u64 = 1647;
const SCRATCH_STEPS_DEBUG: u64 = 2056;

/// File in the `O=` tree with the step count of its last from-scratch build.
const STEPS_FILE: &str = ".p2pdma-build-steps";

/// Whether a line of make's output is a build step (`  CC      mm/gup.o`,
/// `  RUSTC L rust/kernel.o`, `  LD      vmlinux.o`), not a compiler diagnostic.
/// Returns the step, whitespace collapsed.
pub fn build_step(line: &str) -> Option<String> {
    let rest = line.strip_prefix("  ")?;
    let mut words = rest.split_whitespace();
    let tag = words.next()?;
    let is_tag = tag.len() >= 2
        && tag.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && tag.chars().next()?.is_ascii_uppercase();
    if !is_tag || !rest.starts_with(tag) {
        return None;
    }
    let target: Vec<&str> = words.collect();
    if target.is_empty() {
        return None;
    }
    Some(format!("{tag} {}", target.join(" ")))
}

/// How many steps the coming build will take: for a build from scratch (no
/// `vmlinux` in the `O=` tree), the count recorded by the last one, else the
/// known approximate count; unknown for an incremental build.
pub fn expected_steps(out: &Path, profile: Profile) -> Option<u64> {
    if out.join("vmlinux").exists() {
        return None;
    }
    let recorded = fs::read_to_string(out.join(STEPS_FILE)).ok().and_then(|s| s.trim().parse().ok());
    Some(recorded.unwrap_or(scratch_steps(profile)))
}

/// Step 4: incremental build of `bzImage` and the modules, output in
/// `out/<profile>/build.log`, progress as steps done out of the expected count,
/// with an ETA.
pub fn build(paths: &Paths, profile: Profile, extra: &[&str]) -> Result<()> {
    let out = paths.out(profile);
    let log_path = out.join("build.log");
    let mut log = fs::File::create(&log_path)?;
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(paths.tree())
        .arg(format!("O={}", out.display()))
        .arg(LLVM)
        .arg(format!("-j{jobs}"))
        .args(extra)
        .args(["bzImage", "modules"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    build_env(&mut cmd);
    let total = expected_steps(&out, profile);
    util::step(
        "build",
        &format!(
            "{} kernel: make -j{jobs} {} bzImage modules ({}; log: {})",
            profile.name(),
            extra.join(" "),
            match total {
                Some(t) => format!("from scratch, about {t} steps"),
                None => "incremental".into(),
            },
            log_path.display()
        ),
    );
    let mut child = cmd.spawn().context("spawning make")?;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            let _ = tx2.send(l);
        }
    });
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            let _ = tx.send(l);
        }
    });
    let mut progress = util::Progress::new("build", "steps", total);
    let mut last = String::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(l) => {
                writeln!(log, "{l}")?;
                if let Some(s) = build_step(&l) {
                    last = s;
                    progress.inc(&last);
                    continue;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(_) => {}
        }
        // Keep the ETA and the plain lines going while a long step (a link) runs.
        progress.set(progress.done(), &last);
    }
    let steps = progress.done();
    let secs = progress.elapsed().as_secs();
    progress.finish();
    let status = child.wait()?;
    if !status.success() {
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("---- last lines of {} ----", log_path.display());
        for l in &lines[lines.len().saturating_sub(40)..] {
            eprintln!("{l}");
        }
        if let Some(hint) = build_failure_hint(&text) {
            bail!("kernel build failed ({status}): {hint}");
        }
        bail!("kernel build failed ({status})");
    }
    if total.is_some() {
        // The next build from scratch of this profile expects as many steps.
        fs::write(out.join(STEPS_FILE), format!("{steps}\n"))?;
    }
    util::step("build", &format!("done in {} ({steps} steps)", util::human(Duration::from_secs(secs))));
    Ok(())
}

/// The kernel's `usr/gen_init_cpio`: the one the build made in the `O=` tree, or,
/// when that tree has none (no `CONFIG_BLK_DEV_INITRD`), one compiled with the host
/// cc from the source tree into the cache.
pub fn gen_init_cpio(paths: &Paths, profile: Profile) -> Result<PathBuf> {
    let built = paths.out(profile).join("usr/gen_init_cpio");
    if built.is_file() {
        return Ok(built);
    }
    let src = paths.tree().join("usr/gen_init_cpio.c");
    let dst = paths.cache.join("tools/gen_init_cpio");
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    if mtime(&dst).is_none() || mtime(&dst) < mtime(&src) {
        fs::create_dir_all(dst.parent().unwrap())?;
        run(Command::new("cc").arg("-O2").arg("-o").arg(&dst).arg(&src))
            .context("compiling usr/gen_init_cpio.c with the host cc (package gcc: run scripts/bootstrap as root)")?;
    }
    Ok(dst)
}

/// Builds the kselftests of `tools/testing/selftests/p2pdma` into `out/<profile>/kselftest`.
pub fn build_selftests(paths: &Paths, profile: Profile) -> Result<PathBuf> {
    let dest = paths.out(profile).join("kselftest/p2pdma");
    fs::create_dir_all(&dest)?;
    let mut c = Command::new("make");
    c.arg("-C").arg(paths.tree().join("tools/testing/selftests/p2pdma")).arg(format!("OUTPUT={}", dest.display())).arg("-s");
    run(&mut c).context("building tools/testing/selftests/p2pdma")?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_steps() {
        assert_eq!(build_step("  CC      mm/gup.o").as_deref(), Some("CC mm/gup.o"));
        assert_eq!(build_step("  RUSTC L rust/kernel.o").as_deref(), Some("RUSTC L rust/kernel.o"));
        assert_eq!(build_step("  LD [M]  lib/test.ko").as_deref(), Some("LD [M] lib/test.ko"));
        assert_eq!(build_step("  HOSTCC  scripts/kconfig/conf.o").as_deref(), Some("HOSTCC scripts/kconfig/conf.o"));
        // Compiler diagnostics, make's own lines and a bare tag are not steps.
        assert_eq!(build_step("   12 |         foo();"), None);
        assert_eq!(build_step("      |         ^"), None);
        assert_eq!(build_step("make[1]: Entering directory '/x'"), None);
        assert_eq!(build_step("  SYNC"), None);
        assert_eq!(build_step("mm/gup.c:10:1: warning: unused"), None);
        assert_eq!(build_step("  = note: this"), None);
    }

    #[test]
    fn failure_hints() {
        let log = "  CC      init/main.o\nmake[2]: clang-19: Command not found\nmake: *** [Makefile:2000] Error 2\n";
        assert_eq!(build_failure_hint(log).unwrap(), util::missing_tool("clang-19"));
        let log = "/bin/sh: 1: bindgen: not found\nmake[1]: *** Error 127\n";
        assert_eq!(build_failure_hint(log).unwrap(), util::missing_tool("bindgen"));
        let log = "***\n*** The source tree is not clean, please run 'make mrproper'\n*** in /root/.cache/p2pdma-rs/linux\n";
        assert!(build_failure_hint(log).unwrap().contains("mrproper"));
        let log = "fatal error: error writing to /tmp/cc.s: No space left on device\n";
        assert!(build_failure_hint(log).unwrap().starts_with("disk full"));
        assert_eq!(build_failure_hint("mm/gup.c:1:1: error: expected ';'\n"), None);
    }

    #[test]
    fn expected_steps_from_scratch() {
        let dir = std::env::temp_dir().join(format!("steps-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        assert_eq!(expected_steps(&dir, Profile::Debug), Some(SCRATCH_STEPS_DEBUG));
        fs::write(dir.join(STEPS_FILE), "4321\n").unwrap();
        assert_eq!(expected_steps(&dir, Profile::Debug), Some(4321));
        fs::write(dir.join("vmlinux"), "").unwrap();
        assert_eq!(expected_steps(&dir, Profile::Debug), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
