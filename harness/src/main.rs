// SPDX-License-Identifier: GPL-2.0
//! p2pdma-rs harness: fetch Linux 7.3, apply this repository, build, boot under QEMU
//! with NVMe CMB devices, run the tests and judge them.
//!
//! ```text
//! ./run test  [--impl c,rust] [--kvm] [--no-canary]   build the debug kernel, run every test
//! ./run demo  [--impl rust|c] [--kvm]                 build the base kernel, show fio through p2pmem
//! ./run soak  [--rounds N] [--debug-rounds N]        the long run: stress tests, lazy RCU
//! ./run mutants [--only NAME,...]                    broken kernels the tests must catch
//! ./run bench [--reps N] [--rounds N] [--only FIGURE]  C vs Rust benchmarks, base kernel
//! ./run build [--profile base|debug] [--clippy]       only build
//! ```
//!
//! `./run <command> --help` documents every option (see `cli.rs`).

mod bench;
mod cli;
mod guest;
mod judge;
mod kconfig;
mod kernel;
mod mutants;
mod series;
mod splat;
mod tap;
mod util;

use anyhow::{bail, Context, Result};
use clap::Parser;
use cli::{Opts, DEFAULT_STRESS_ITERS};
use kernel::{Paths, Profile};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn paths() -> Result<Paths> {
    let repo = std::env::var_os("P2PDMA_REPO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."));
    let repo = repo.canonicalize()?;
    let cache = match std::env::var_os("P2PDMA_CACHE") {
        Some(c) => PathBuf::from(c),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache/p2pdma-rs"),
    };
    fs::create_dir_all(&cache)?;
    Ok(Paths { repo, cache })
}

/// fetch → prepare → configure → build.
fn build_kernel(p: &Paths, profile: Profile, clippy: bool) -> Result<()> {
    util::require_tools(kernel::BUILD_TOOLS)?;
    kernel::check_space(p, profile)?;
    kernel::fetch(p)?;
    let id = kernel::prepare(p)?;
    util::step("prepare", &format!("build tree = pristine + {} patch(es) (tree {})", kernel::patch_files(&p.repo)?.len(), &id[..12]));
    kernel::configure(p, profile, &id)?;
    let extra: &[&str] = if clippy { &["CLIPPY=1"] } else { &[] };
    kernel::build(p, profile, extra)
}

fn results_dir(p: &Paths, what: &str) -> Result<PathBuf> {
    let stamp = util::run_capture(std::process::Command::new("date").arg("+%Y%m%d-%H%M%S"))?;
    let dir = p.repo.join("results").join(format!("{}-{what}", stamp.trim()));
    fs::create_dir_all(&dir)?;
    let latest = p.repo.join("results").join(format!("latest-{what}"));
    let _ = fs::remove_file(&latest);
    let _ = std::os::unix::fs::symlink(dir.file_name().unwrap(), &latest);
    Ok(dir)
}

/// Which implementations the built kernel offers.
fn available_impls(p: &Paths, profile: Profile) -> Vec<String> {
    if kernel::config_has(p, profile, "PCI_P2PDMA_RS") {
        vec!["c".into(), "rust".into()]
    } else {
        vec!["c".into()]
    }
}

/// The guest kernel's command line. `nvme.sgl_threshold=0` works around QEMU's NVMe
/// model: it refuses (Invalid Use of Controller Memory Buffer) a command whose data
/// is in the CMB when its SGL segment list is in host memory, since it decides from
/// the segment list's address where the data is (`nvme_map_sgl`). Linux picks SGLs
/// when a request's segments average 32 KiB or more, as I/O from 2 MiB folios does;
/// with the threshold at 0 it uses PRPs, which QEMU maps by the data's address.
fn base_cmdline(extra: &str) -> String {
    format!("console=ttyS0 panic=-1 hung_task_panic=0 nvme.sgl_threshold=0 {extra}").trim().to_string()
}

fn boot_in(p: &Paths, profile: Profile, work: &Path, cmdline: String, o: &Opts, minutes: u64) -> Result<guest::Outcome> {
    fs::create_dir_all(work.join("results"))?;
    let initramfs = p.out(profile).join("p2pdma-initramfs.cpio");
    guest::ensure_initramfs(&initramfs, &kernel::gen_init_cpio(p, profile)?)?;
    // Fresh sparse backing files per boot: boots may run side by side (QEMU locks
    // its images), and no test may depend on what an earlier boot wrote.
    let disks = work.join("disks");
    guest::ensure_disks(&disks)?;
    // The BAR provider is a module (the tests unload and reload it); the guest's
    // run.sh loads it from here.
    let ko = p.out(profile).join("drivers/pci/p2pmem_bar/p2pmem_bar.ko");
    if ko.exists() {
        fs::create_dir_all(work.join("modules"))?;
        fs::copy(&ko, work.join("modules/p2pmem_bar.ko"))?;
    }
    let b = guest::Boot {
        kernel: p.bzimage(profile),
        initramfs,
        work: work.to_path_buf(),
        disks: disks.clone(),
        cmdline,
        kvm: o.kvm,
        // The debug kernel's tests need far less than 4 GiB, and kmemleak's scans
        // at the end of a test boot read every struct page of the guest's RAM.
        memory_mib: if profile == Profile::Debug { 2048 } else { 4096 },
        timeout: Duration::from_secs(60 * o.timeout_min.unwrap_or(minutes)),
        cases: expected_cases(p, work),
    };
    util::step("boot", &format!("{} kernel, {}, cmdline '{}'", profile.name(), if o.kvm { "KVM" } else { "TCG" }, b.cmdline));
    let out = guest::boot(&b);
    let _ = fs::remove_dir_all(&disks);
    let out = out?;
    util::step("boot", &format!("guest done in {:.0}s, console: {}", out.seconds, out.console.display()));
    Ok(out)
}

/// The selftest directory of the series.
const SELFTESTS: &str = "tools/testing/selftests/p2pdma";

/// Every test case of the series' selftests, `(binary, test)`, as the sources in the
/// prepared tree define them (`judge::tests_in_source`); the benchmark is not a test.
fn selftest_cases(p: &Paths) -> Result<Vec<(String, String)>> {
    let dir = p.tree().join(SELFTESTS);
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> =
        fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let (binary, script) = match name.rsplit_once('.') {
            Some((stem, "c")) if !stem.contains("bench") && !stem.contains("lib") => (stem.to_string(), false),
            Some((_, "sh")) => (name.clone(), true),
            _ => continue,
        };
        let tests = judge::tests_in_source(&fs::read_to_string(&f)?, script);
        out.extend(tests.into_iter().map(|t| (binary.clone(), t)));
    }
    if out.is_empty() {
        bail!("no test in {}: the series has no selftests", dir.display());
    }
    Ok(out)
}

/// Every KUnit suite the series adds (`kunit_tests(<name>)` in `patches/`), and the
/// kernel crate's doctests, which the debug kernel runs at boot.
fn kunit_suites(p: &Paths) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in kernel::patch_files(&p.repo)? {
        out.extend(judge::kunit_suites_in_patch(&fs::read_to_string(&f)?));
    }
    if kernel::config_has(p, Profile::Debug, "RUST_KERNEL_DOCTESTS") {
        out.push("rust_doctests_kernel".to_string());
    }
    Ok(out)
}

/// How many test cases a boot will report: the expected tests of the programs
/// copied into its `bin/`, once per provider kind of the topology for the
/// per-provider programs (`None` when it runs none, as the demo and benchmarks).
fn expected_cases(p: &Paths, work: &Path) -> Option<u64> {
    let expected = selftest_cases(p).ok()?;
    let n: usize = expected
        .iter()
        .filter(|(b, _)| work.join("bin").join(b).is_file())
        .map(|(b, _)| if guest::ONCE_PER_BOOT.contains(&b.as_str()) { 1 } else { guest::PROVIDER_KINDS.len() })
        .sum();
    (n > 0).then_some(n as u64)
}

const GUEST_LIB: &str = include_str!("../guest/lib.sh");

fn write_run_sh(work: &Path, body: &str) -> Result<()> {
    fs::write(work.join("run.sh"), format!("{GUEST_LIB}\n{body}"))?;
    Ok(())
}

/// What the tests of one boot need to know besides the boot itself.
struct Suite {
    /// The selftest programs as built (`TEST_GEN_PROGS`).
    selftests: PathBuf,
    /// Every selftest case, `(binary, test)`.
    expected: Vec<(String, String)>,
    /// `harness/known-failures.txt`.
    known_text: String,
    /// KUnit suites to find in the console (none for the base kernel).
    kunit_suites: Vec<String>,
}

impl Suite {
    fn new(p: &Paths, profile: Profile) -> Result<Self> {
        Ok(Suite {
            selftests: kernel::build_selftests(p, profile)?,
            expected: selftest_cases(p)?,
            known_text: fs::read_to_string(p.repo.join("harness/known-failures.txt"))?,
            kunit_suites: if profile == Profile::Debug { kunit_suites(p)? } else { Vec::new() },
        })
    }
}

/// One boot running selftests: which programs, how many stress rounds, what else
/// goes on the command line.
struct TestBoot<'a> {
    profile: Profile,
    imp: &'a str,
    iters: u32,
    /// Whether a program (a binary, or a script of `TEST_PROGS`) runs in this boot.
    programs: &'a dyn Fn(&str) -> bool,
    cmdline: String,
    /// Guest timeout in minutes, unless `--timeout-min` says otherwise.
    minutes: u64,
    /// End the boot with the canary (see [`judge_canary`]).
    canary: bool,
    /// Run the KUnit suites at boot and judge them (`kunit.enable=0` otherwise):
    /// they test the abstractions, whatever implementation serves `allocate`.
    kunit: bool,
    /// Sweep fail-nth in p2pmem_fault_test on every provider, but for NVMe unbind
    /// and bind (by default the NVMe provider gets the fail points only when a
    /// p2pmem_bar provider, which walks the same code, is swept in the same boot).
    full_sweep: bool,
}

/// The outcome of a [`TestBoot`], judged.
struct Judged {
    v: judge::Verdict,
    rel: judge::Reliability,
    results: PathBuf,
    /// With [`TestBoot::canary`]: the console from the canary's marker line on
    /// (`None`: the guest never got there), which the judge of the boot left out.
    canary: Option<String>,
}

/// The console line that starts the canary (`canary()` of `guest/lib.sh`).
const CANARY_MARKER: &str = "harness: canary: a deliberate WARN through LKDTM";

/// Cuts `console` at the line of the canary's marker; returns the rest, from that
/// line on, or `None` without the marker.
fn split_canary(console: &mut String) -> Option<String> {
    let at = console.find(CANARY_MARKER)?;
    let at = console[..at].rfind('\n').map_or(0, |i| i + 1);
    let tail = console[at..].to_string();
    console.truncate(at);
    Some(tail)
}

/// Whether a splat is the canary's: the WARN that LKDTM's `WARNING` triggers.
fn is_canary(s: &crate::splat::Splat) -> bool {
    s.kind == "WARN" && s.text.contains("lkdtm")
}

/// Judges the canary: the WARN that the last test boot triggers through LKDTM
/// after its results are written must be caught by the same kernel-log judge as
/// every boot, which proves that a splat fails a run. Returns the summary line and
/// whether it passed.
fn judge_canary(j: &Judged) -> (String, bool) {
    let results = j.results.join("canary");
    let Some(tail) = &j.canary else {
        return ("== canary: FAIL: the boot did not get to the canary".into(), false);
    };
    let mut v = judge::Verdict::default();
    judge::judge_kernel(&mut v, tail, &results, "");
    let caught = v.splats.iter().any(is_canary) && !v.ok();
    if caught && results.join("done").exists() {
        ("== canary: a WARN triggered through LKDTM was detected as a splat (the splat check works)".into(), true)
    } else {
        (format!("== canary: FAIL: the deliberate WARN was not detected (splats={:?})", v.splats), false)
    }
}

/// Copies the test programs `programs` selects into `work/bin`: `TEST_GEN_PROGS`
/// from the build, `TEST_PROGS` (scripts) from the source. Returns their names.
fn copy_programs(p: &Paths, s: &Suite, work: &Path, programs: &dyn Fn(&str) -> bool) -> Result<Vec<String>> {
    fs::create_dir_all(work.join("bin"))?;
    let mut binaries = Vec::new();
    let script_dir = p.tree().join(SELFTESTS);
    for (dir, scripts) in [(&s.selftests, false), (&script_dir, true)] {
        for e in fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let wanted = if scripts { name.ends_with(".sh") } else { !name.contains('.') && !name.contains("bench") };
            if e.file_type()?.is_file() && wanted && programs(&name) {
                fs::copy(e.path(), work.join("bin").join(&name))?;
                binaries.push(name);
            }
        }
    }
    binaries.sort();
    Ok(binaries)
}

/// Boots once with `b`'s programs in `work`, and judges the TAP of every program on
/// every provider, the KUnit suites and the kernel log.
fn run_test_boot(p: &Paths, s: &Suite, b: &TestBoot, o: &Opts, work: &Path) -> Result<Judged> {
    let known = judge::known_failures(&s.known_text, b.imp);
    let binaries = copy_programs(p, s, work, b.programs)?;
    let canary = if b.canary { "canary\n" } else { "" };
    let sweep = if b.full_sweep { "FULL_SWEEP=1\n" } else { "" };
    write_run_sh(work, &format!("IMPL={}\nexport P2PDMA_STRESS_ITERS={}\n{sweep}run_tests\nfinish\n{canary}", b.imp, b.iters))?;
    let kunit = if b.kunit { "" } else { "kunit.enable=0" };
    let cmdline = base_cmdline(&format!("p2pdma.impl={} {kunit} {} {}", b.imp, b.cmdline, o.extra_cmdline));
    let out = boot_in(p, b.profile, work, cmdline, o, b.minutes)?;
    let mut console = fs::read_to_string(&out.console)?;
    let canary = if b.canary { split_canary(&mut console) } else { None };
    let mut v = judge::Verdict::default();
    if let Err(e) = guest::require_finished(&out) {
        v.problems.push(e.to_string());
    }
    let results = work.join("results");
    // The guest lists the providers it found by what they are (`<kind> <BDF>`);
    // every kind of the topology must be there, and every per-provider test
    // runs on each.
    let (providers, missing) = guest::providers(&results);
    if let Some(kind) = missing {
        v.problems.push(format!("no p2pmem provider of kind {kind} in the guest (providers.txt: {providers:?})"));
    }
    for bin in &binaries {
        let exp: Vec<String> = s.expected.iter().filter(|(x, _)| x == bin).map(|(_, t)| t.clone()).collect();
        let kf: Vec<(String, String)> = known.iter().filter(|(x, _, _)| x == bin).map(|(_, t, r)| (t.clone(), r.clone())).collect();
        let runs: Vec<String> = if guest::ONCE_PER_BOOT.contains(&bin.as_str()) {
            vec![bin.clone()]
        } else {
            providers.iter().map(|p| format!("{bin}@{p}")).collect()
        };
        for run in &runs {
            let tap = fs::read_to_string(results.join(format!("{run}.tap"))).ok();
            let rc = fs::read_to_string(results.join(format!("{run}.rc"))).ok().and_then(|s| s.trim().parse().ok());
            judge::judge_tap(&mut v, run, tap.as_deref(), rc, &exp, &kf);
        }
    }
    for (bin, _) in &s.expected {
        if (b.programs)(bin) && !binaries.contains(bin) {
            v.problems.push(format!("expected test program {bin} was not built"));
        }
    }
    if b.kunit {
        judge::judge_kunit(&mut v, &console, &s.kunit_suites);
    }
    judge::judge_kernel(&mut v, &console, &results, &fs::read_to_string(&out.qemu_stderr).unwrap_or_default());
    if let Some(tail) = &canary {
        // Every splat after the marker but the canary's own WARN is the boot's
        // (a late report, the shutdown path).
        for s in crate::splat::scan(tail).into_iter().filter(|s| !is_canary(s)) {
            v.problems.push(format!("kernel splat ({}) after the canary's marker: {}", s.kind, s.text));
            v.splats.push(s);
        }
    }
    let rel = judge::reliability(&v, &results, b.iters, out.timed_out);
    Ok(Judged { v, rel, results, canary })
}

/// The summary lines of a judged boot.
fn boot_lines(title: &str, j: &Judged, imp: &str) -> Vec<String> {
    let v = &j.v;
    let mut lines = vec![format!(
        "== {title}: {} passed, {} failed, {} skipped, {} known failure(s), {} problem(s), {} splat(s)",
        v.passed.len(),
        v.failed.len(),
        v.skipped.len(),
        v.xfailed.len(),
        v.problems.len(),
        v.splats.len()
    )];
    lines.extend(v.failed.iter().map(|f| format!("   FAIL {f}")));
    lines.extend(v.xfailed.iter().map(|f| format!("   XFAIL {f}")));
    lines.extend(v.xpassed.iter().map(|f| format!("   XPASS {f}")));
    lines.extend(v.skipped.iter().map(|f| format!("   SKIP {f}")));
    lines.extend(v.problems.iter().map(|f| format!("   PROBLEM {f}")));
    lines.extend(v.notes.iter().map(|n| format!("   NOTE {n}")));
    lines.extend(diag_lines(&j.results).into_iter().map(|d| format!("   {d}")));
    lines.push(format!("   {}", j.rel.summary(imp)));
    lines
}

fn cmd_test(o: &Opts) -> Result<bool> {
    let p = paths()?;
    let profile = Profile::Debug;
    build_kernel(&p, profile, o.clippy)?;
    let suite = Suite::new(&p, profile)?;
    let impls = o.impls.clone().unwrap_or_else(|| available_impls(&p, profile));
    let res = results_dir(&p, "test")?;
    let iters = o.stress_iters.unwrap_or(DEFAULT_STRESS_ITERS);
    util::step("test", &format!("implementations: {}; stress rounds per test: {iters}; results: {}", impls.join(", "), res.display()));

    let mut all_ok = true;
    let mut lines = Vec::new();
    let mut total = judge::Totals::default();
    for (i, imp) in impls.iter().enumerate() {
        let b = TestBoot {
            profile,
            imp,
            iters,
            programs: &|_| true,
            cmdline: String::new(),
            // About a minute per stress round under TCG, on top of the rest.
            minutes: 40 + u64::from(iters) * 2,
            // The last boot runs the KUnit suites, and ends with the canary once
            // its results are in.
            canary: o.canary && i + 1 == impls.len(),
            kunit: i + 1 == impls.len(),
            full_sweep: false,
        };
        let j = run_test_boot(&p, &suite, &b, o, &res.join(imp))?;
        total.add(&j.v, &j.rel);
        lines.extend(boot_lines(&format!("impl={imp}"), &j, imp));
        all_ok &= j.v.ok();
        if b.canary {
            let (line, ok) = judge_canary(&j);
            if ok {
                total.passed += 1;
            } else {
                total.failed += 1;
                all_ok = false;
            }
            lines.push(line);
        }
    }

    let longrun = judge::latest_soak(&p.repo.join("results"));
    lines.push(total.summary_line(iters, total.faults(), longrun.as_deref()));
    println!();
    println!("================ p2pdma-rs test summary ================");
    for l in &lines {
        println!("{l}");
    }
    println!("results (guest console, TAP, dmesg): {}", res.display());
    println!("{}", total.counts_line());
    fs::write(res.join("summary.txt"), lines.join("\n") + &format!("\n{}\n", total.counts_line()))?;
    Ok(all_ok)
}

/// The programs a soak boot runs: the stress tests.
fn stress_only(name: &str) -> bool {
    name == "p2pmem_stress_test"
}

fn cmd_soak(o: &Opts) -> Result<bool> {
    let p = paths()?;
    let rounds = o.stress_iters.unwrap_or(cli::SOAK_ROUNDS);
    let debug_rounds = o.debug_rounds.unwrap_or(cli::SOAK_DEBUG_ROUNDS);
    let res = results_dir(&p, if o.lazy_only { "soak-lazy" } else { "soak" })?;
    let mut lines = Vec::new();
    let mut total = judge::Totals::default();
    let mut all_ok = true;
    let mut debug_suite = None;
    // Stress rounds take about 8 s (base) and 25 s (debug) per round and provider
    // kind under TCG; the timeouts leave twice that.
    let stress: &[(Profile, u32, u64)] = if o.lazy_only { &[] } else { &[(Profile::Base, rounds, 16), (Profile::Debug, debug_rounds, 50)] };
    for &(profile, n, per_round_s) in stress {
        build_kernel(&p, profile, false)?;
        let suite = Suite::new(&p, profile)?;
        let impls = o.impls.clone().unwrap_or_else(|| available_impls(&p, profile));
        util::step("soak", &format!("{} kernel: {n} stress rounds, {}; results: {}", profile.name(), impls.join(", "), res.display()));
        for imp in &impls {
            let b = TestBoot {
                profile,
                imp,
                iters: n,
                programs: &stress_only,
                cmdline: String::new(),
                minutes: 15 + u64::from(n) * per_round_s * guest::PROVIDER_KINDS.len() as u64 / 60,
                canary: false,
                kunit: true,
                full_sweep: false,
            };
            let j = run_test_boot(&p, &suite, &b, o, &res.join(format!("{}-{imp}", profile.name())))?;
            total.add(&j.v, &j.rel);
            lines.extend(boot_lines(&format!("{} kernel, impl={imp}, {n} rounds", profile.name()), &j, imp));
            all_ok &= j.v.ok();
        }
        if profile == Profile::Debug {
            debug_suite = Some(suite);
        }
    }
    if o.lazy {
        // Lazy RCU applies to CPUs whose callbacks are offloaded: all of them here.
        let profile = Profile::Debug;
        if !kernel::config_has(&p, profile, "RCU_LAZY") {
            bail!("the debug kernel has no CONFIG_RCU_LAZY (kconfig/debug.config)");
        }
        let suite = match debug_suite {
            Some(s) => s,
            None => {
                build_kernel(&p, profile, false)?;
                Suite::new(&p, profile)?
            }
        };
        let b = TestBoot {
            profile,
            imp: "rust",
            iters: DEFAULT_STRESS_ITERS,
            programs: &|_| true,
            cmdline: "rcu_nocbs=all rcutree.enable_rcu_lazy=1".into(),
            minutes: 40 + u64::from(DEFAULT_STRESS_ITERS) * 2,
            canary: false,
            kunit: true,
            // The long run sweeps the NVMe provider too.
            full_sweep: true,
        };
        let j = run_test_boot(&p, &suite, &b, o, &res.join("debug-rust-lazy-rcu"))?;
        total.add(&j.v, &j.rel);
        lines.extend(boot_lines("debug kernel, impl=rust, lazy RCU (rcu_nocbs=all rcutree.enable_rcu_lazy=1)", &j, "rust"));
        all_ok &= j.v.ok();
    }
    let stamp = res.file_name().map(|f| f.to_string_lossy().trim_end_matches("-soak").to_string()).unwrap_or_default();
    if !o.lazy_only {
        lines.push(format!("longrun: {rounds}+{debug_rounds}@{stamp}:{}", if all_ok { "ok" } else { "FAILED" }));
    }
    lines.push(total.summary_line(if o.lazy_only { DEFAULT_STRESS_ITERS } else { rounds }, total.faults(), None));
    lines.push(total.counts_line());
    print_summary("soak", &lines, &res, "soak.txt")?;
    Ok(all_ok)
}

/// Builds the kernel once per mutant (`harness/mutants`), runs the tests the
/// mutant must break on the Rust implementation, and checks that each fails; then
/// builds the series' kernel again.
fn cmd_mutants(o: &Opts) -> Result<bool> {
    let p = paths()?;
    let list = mutants::load(&p.repo.join("harness/mutants"), o.mutants.as_deref())?;
    if list.is_empty() {
        bail!("no mutants in harness/mutants");
    }
    // Each mutant on the kernel it asks for (base by default), unless --profile says.
    let kernel_of = |m: &mutants::Mutant| o.profile.or(m.kernel).unwrap_or(Profile::Base);
    let profiles: Vec<Profile> = [Profile::Base, Profile::Debug].into_iter().filter(|k| list.iter().any(|m| kernel_of(m) == *k)).collect();
    let res = results_dir(&p, "mutants")?;
    let mut lines = Vec::new();
    let mut judged = Vec::new();
    let mut all_ok = true;
    let mut tree_id = String::new();
    let mut suite = None;
    for &profile in &profiles {
        build_kernel(&p, profile, false)?;
        let s = Suite::new(&p, profile)?;
        tree_id = kernel::prepare(&p)?;
        for m in list.iter().filter(|m| kernel_of(m) == profile) {
            util::step("mutant", &format!("{}: {} ({} test(s), {} kernel)", m.name, m.what, m.expect_fail.len(), profile.name()));
            lines.push(format!("== {} ({} kernel): {}", m.name, profile.name(), m.what));
            match run_mutant(&p, &s, profile, &tree_id, m, o, &res.join(&m.name)) {
                Ok((l, j)) => {
                    lines.extend(l);
                    mutants::save(&res.join(&m.name).join("outcome.txt"), &mutant_key(&p, &tree_id, m)?, &j)?;
                    all_ok &= j.iter().all(|(_, _, o)| o.caught());
                    judged.extend(j.into_iter().map(|(b, t, o)| (m.name.clone(), b, t, o)));
                }
                Err(e) => {
                    all_ok = false;
                    lines.push(format!("   ERROR: {e:#}"));
                }
            }
        }
        suite = Some(s);
    }
    let suite = suite.context("no kernel to break")?;
    let caught = judged.iter().filter(|(_, _, _, o)| o.caught()).count();
    let named: usize = list.iter().map(|m| m.expect_fail.len()).sum();
    util::step("mutant", "building the series' kernels again");
    let rebuilt: Result<Vec<()>> = profiles.iter().map(|&k| build_kernel(&p, k, false)).collect();
    // The evidence also takes, for the mutants this run left out, what the latest
    // earlier run of the same mutant found: on the same series if there is one, else
    // on an earlier series (listed apart, with that run's directory).
    let (mut earlier, mut older) = (Vec::new(), Vec::new());
    let dirs = util::result_dirs(&p.repo.join("results"), "mutants");
    for m in mutants::load(&p.repo.join("harness/mutants"), None)? {
        if list.iter().any(|x| x.name == m.name) {
            continue;
        }
        let key = mutant_key(&p, &tree_id, &m)?;
        let blob = key.split_whitespace().nth(1).unwrap_or_default();
        let find = |same_series: bool| {
            dirs.iter().rev().find_map(|d| {
                let text = fs::read_to_string(d.join(&m.name).join("outcome.txt")).ok()?;
                let (saved_key, j) = mutants::saved(&text)?;
                let usable = if same_series { saved_key == key } else { saved_key.split_whitespace().nth(1) == Some(blob) };
                usable.then(|| (d.file_name().unwrap_or_default().to_string_lossy().into_owned(), j))
            })
        };
        let (found, to) = match find(true) {
            Some(f) => (Some(f), &mut earlier),
            None => (find(false), &mut older),
        };
        if let Some((dir, j)) = found {
            to.push(format!("{} (results/{dir})", m.name));
            judged.extend(j.into_iter().map(|(b, t, o)| (m.name.clone(), b, t, o)));
        }
    }
    lines.push(format!("mutants: {} mutant(s), {caught} of {named} named test(s) caught", list.len()));
    print_summary("mutants", &lines, &res, "mutants.txt")?;
    let known_c = judge::known_failures(&suite.known_text, "c");
    let names: Vec<&str> = list.iter().map(|m| m.name.as_str()).collect();
    let table = mutants::evidence(&suite.expected, &known_c, &judged);
    let mut earlier =
        if earlier.is_empty() { String::new() } else { format!("Mutants from earlier runs of the same series: {}\n", earlier.join(", ")) };
    if !older.is_empty() {
        earlier.push_str(&format!(
            "Mutants from runs on an earlier version of the series (same mutant, not rerun since): {}\n",
            older.join(", ")
        ));
    }
    fs::write(res.join("evidence.md"), format!("Mutants run: {}\n{earlier}\n{table}", names.join(", ")))?;
    println!("evidence table (every test, how it was shown to fail): {}", res.join("evidence.md").display());
    rebuilt?;
    Ok(all_ok && caught == named)
}

/// What a mutant's judgement depends on: the series' tree and the mutant's blob.
fn mutant_key(p: &Paths, tree_id: &str, m: &mutants::Mutant) -> Result<String> {
    let blob = util::run_capture(std::process::Command::new("git").arg("-C").arg(p.tree()).arg("hash-object").arg(&m.path))?;
    Ok(format!("{tree_id} {}", blob.trim()))
}

/// The build tree with a mutant applied; dropping it resets the tree to `id` (the
/// series), whatever happened meanwhile.
struct Mutated<'a> {
    tree: PathBuf,
    id: &'a str,
}

impl Mutated<'_> {
    fn apply<'a>(p: &Paths, id: &'a str, patch: &Path) -> Result<Mutated<'a>> {
        let m = Mutated { tree: p.tree(), id };
        run_git(&m.tree, &["apply", "--index", &patch.to_string_lossy()])?;
        Ok(m)
    }
}

impl Drop for Mutated<'_> {
    fn drop(&mut self) {
        if let Err(e) = run_git(&self.tree, &["read-tree", "--reset", "-u", self.id]) {
            eprintln!("harness: error: could not reset the build tree after a mutant ({e:#}); the next build resets it");
        }
    }
}

/// `(binary, test, outcome)` of one test under one mutant.
type Judgement = (String, String, mutants::Outcome);

/// One mutant: apply, build, boot with its tests, judge each. Returns the summary
/// lines and `(binary, test, outcome)` per named test.
fn run_mutant(
    p: &Paths,
    suite: &Suite,
    profile: Profile,
    tree_id: &str,
    m: &mutants::Mutant,
    o: &Opts,
    work: &Path,
) -> Result<(Vec<String>, Vec<Judgement>)> {
    let out = {
        let _mutated = Mutated::apply(p, tree_id, &m.path)?;
        kernel::build(p, profile, &[]).context("the mutant does not build")?;
        let programs = m.programs();
        copy_programs(p, suite, work, &|n| programs.iter().any(|x| x == n))?;
        fs::create_dir_all(work.join("args"))?;
        for bin in &programs {
            fs::write(work.join("args").join(bin), m.args(bin))?;
        }
        // Only the named tests run: the fail-nth sweep of every provider is cheap.
        write_run_sh(work, &format!("IMPL=rust\nexport P2PDMA_STRESS_ITERS={DEFAULT_STRESS_ITERS}\nFULL_SWEEP=1\nrun_tests\nfinish\n"))?;
        let cmdline = base_cmdline(&format!("p2pdma.impl=rust {}", o.extra_cmdline));
        boot_in(p, profile, work, cmdline, o, 40)?
    };
    let results = work.join("results");
    let mut v = judge::Verdict::default();
    let console = fs::read_to_string(&out.console)?;
    judge::judge_kernel(&mut v, &console, &results, &fs::read_to_string(&out.qemu_stderr).unwrap_or_default());
    let broken = !out.finished || !v.splats.is_empty();
    let mut lines = Vec::new();
    if broken {
        lines.push(format!(
            "   guest: finished={}, splats: {}",
            out.finished,
            v.splats.iter().map(|s| s.kind).collect::<Vec<_>>().join(", ")
        ));
    }
    let (providers, missing) = guest::providers(&results);
    if let Some(kind) = missing {
        lines.push(format!("   guest: no provider of kind {kind}"));
    }
    let mut judged = Vec::new();
    for (bin, test) in &m.expect_fail {
        let runs: Vec<String> = if guest::ONCE_PER_BOOT.contains(&bin.as_str()) {
            vec![bin.clone()]
        } else {
            providers.iter().map(|pv| format!("{bin}@{pv}")).collect()
        };
        let runs: Vec<(String, Option<String>)> = runs
            .into_iter()
            .map(|r| {
                let t = fs::read_to_string(results.join(format!("{r}.tap"))).ok();
                (r, t)
            })
            .collect();
        let outcome = mutants::judge_test(&runs, test, broken);
        let how = match &outcome {
            mutants::Outcome::Failed(r) => format!("caught: not ok on {}", r.join(", ")),
            mutants::Outcome::Crashed(r) => format!("caught: the guest died or splatted while it ran ({})", r.join(", ")),
            mutants::Outcome::Skipped => "NOT CAUGHT: skipped".to_string(),
            mutants::Outcome::NotRun => "NOT CAUGHT: did not run".to_string(),
            mutants::Outcome::Survived => "SURVIVED: passed under the mutant".to_string(),
        };
        lines.push(format!("   {bin}: {test}: {how}"));
        judged.push((bin.clone(), test.clone(), outcome));
    }
    Ok((lines, judged))
}

fn run_git(tree: &Path, args: &[&str]) -> Result<()> {
    util::run(std::process::Command::new("git").arg("-C").arg(tree).args(args))
}

/// Prints a command's summary lines and writes them to `res/file`.
fn print_summary(what: &str, lines: &[String], res: &Path, file: &str) -> Result<()> {
    println!();
    println!("================ p2pdma-rs {what} summary ================");
    for l in lines {
        println!("{l}");
    }
    println!("results: {}", res.display());
    fs::write(res.join(file), lines.join("\n") + "\n")?;
    Ok(())
}

fn work_dir(w: &Path) -> Result<PathBuf> {
    fs::create_dir_all(w.join("results"))?;
    Ok(w.to_path_buf())
}

/// `# harness-report: ...` lines the tests print for the summary.
fn diag_lines(results: &Path) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(results) {
        let mut files: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "tap")).collect();
        files.sort();
        for f in files {
            // `<binary>@<provider>.tap`: say which provider the report is about.
            let stem = f.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            let provider = stem.split_once('@').map(|(_, p)| format!("[{p}] ")).unwrap_or_default();
            for l in fs::read_to_string(&f).unwrap_or_default().lines() {
                if let Some(r) = l.trim_start_matches("# ").strip_prefix("REPORT: ") {
                    v.push(format!("report: {provider}{r}"));
                }
            }
        }
    }
    v
}

fn cmd_demo(o: &Opts) -> Result<bool> {
    let p = paths()?;
    let profile = Profile::Base;
    build_kernel(&p, profile, false)?;
    let imp = o.impls.as_ref().and_then(|v| v.first().cloned()).unwrap_or_else(|| available_impls(&p, profile).last().cloned().unwrap());
    let res = results_dir(&p, "demo")?;
    let work = work_dir(&res)?;
    write_run_sh(&work, &format!("IMPL={imp}\nrun_demo\nfinish\n"))?;
    let out = boot_in(&p, profile, &work, base_cmdline(&format!("p2pdma.impl={imp} {}", o.extra_cmdline)), o, 30)?;
    guest::require_finished(&out)?;
    let console = fs::read_to_string(&out.console)?;
    let splats = splat::scan(&console);
    println!();
    println!("================ p2pdma-rs demo (implementation: {imp}) ================");
    for l in fs::read_to_string(work.join("results/devices.txt")).unwrap_or_default().lines() {
        println!("{l}");
    }
    println!();
    println!("fio, 128 KiB O_DIRECT sequential I/O, psync, 32 MiB per job; write jobs verify with crc32c:");
    println!("{:<44} {:>12} {:>12} {:>8}", "job", "write MB/s", "read MB/s", "verify");
    let mut ok = true;
    let mut jobs: Vec<_> = fs::read_dir(work.join("results"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("fio-") && p.extension().is_some_and(|x| x == "json"))
        .collect();
    jobs.sort();
    let mut seen = std::collections::BTreeSet::new();
    for j in &jobs {
        let stem = j.file_stem().unwrap().to_string_lossy().into_owned();
        let label = stem.trim_start_matches("fio-").trim_end_matches("-write").trim_end_matches("-read").to_string();
        if !seen.insert(label.clone()) {
            continue;
        }
        let w = fio_bw(&work.join(format!("results/fio-{label}-write.json")), "write");
        let r = fio_bw(&work.join(format!("results/fio-{label}-read.json")), "read");
        let verify = match fs::read_to_string(work.join(format!("results/fio-{label}-write.rc"))) {
            Ok(s) if s.trim() == "0" => "ok",
            _ => "FAILED",
        };
        ok &= verify == "ok" && w.is_some() && r.is_some();
        let f = |x: Option<f64>| x.map(|v| format!("{v:.1}")).unwrap_or_else(|| "error".into());
        println!("{:<44} {:>12} {:>12} {:>8}", label.replace('_', " "), f(w), f(r), verify);
    }
    if jobs.is_empty() {
        ok = false;
        println!("no fio results: see {}", out.console.display());
    }
    if !splats.is_empty() {
        ok = false;
        for s in &splats {
            println!("kernel splat ({}): {}", s.kind, s.text);
        }
    }
    println!("\nresults: {}", res.display());
    Ok(ok)
}

fn cmd_bench(o: &Opts) -> Result<bool> {
    let p = paths()?;
    let profile = Profile::Base;
    build_kernel(&p, profile, false)?;
    let selftests = kernel::build_selftests(&p, profile)?;
    let reps = o.reps.unwrap_or(cli::DEFAULT_REPS);
    let res = results_dir(&p, "bench")?;
    // Boots alternate c, rust, c, rust, ...: a bias of one boot (where QEMU's threads
    // landed on the host, say) then weighs on both sides.
    let rounds = o.rounds.unwrap_or(1).max(1);
    let only = o.only.map(|n| n.to_string()).unwrap_or_default();
    let mut figs: [Vec<bench::Figure>; 2] = Default::default();
    for round in 0..rounds {
        for (i, imp) in ["c", "rust"].into_iter().enumerate() {
            let dir = if round == 0 { imp.to_string() } else { format!("{imp}-{}", round + 1) };
            let work = work_dir(&res.join(dir))?;
            fs::create_dir_all(work.join("bin"))?;
            fs::copy(selftests.join("p2pmem_bench"), work.join("bin/p2pmem_bench"))?;
            write_run_sh(&work, &format!("IMPL={imp}\nrun_bench {reps} {only}\nfinish\n"))?;
            let cmdline = base_cmdline(&format!("p2pdma.impl={imp} {}", o.extra_cmdline));
            let out = boot_in(&p, profile, &work, cmdline, o, 30 + u64::from(reps) * 6)?;
            guest::require_finished(&out)?;
            let splats = splat::scan(&fs::read_to_string(&out.console)?);
            if !splats.is_empty() {
                anyhow::bail!("kernel splat during the {imp} benchmarks: {}", splats[0].text);
            }
            // One set of figures per provider the guest found (`<kind> <BDF>`).
            let (providers, missing) = guest::providers(&work.join("results"));
            if let Some(kind) = missing {
                anyhow::bail!("no p2pmem provider of kind {kind} in the {imp} boot: see {}", out.console.display());
            }
            let mut f = Vec::new();
            if o.only != Some(4) {
                for prov in &providers {
                    let rc = fs::read_to_string(work.join(format!("results/bench@{prov}.rc")));
                    if rc.ok().as_deref().map(str::trim) != Some("0") {
                        anyhow::bail!("p2pmem_bench failed on provider {prov} in the {imp} boot: see {}", out.console.display());
                    }
                    let text = fs::read_to_string(work.join(format!("results/bench@{prov}.jsonl"))).unwrap_or_default();
                    f.extend(bench::parse_lines(&text).into_iter().map(|x| bench::Figure { name: format!("[{prov}] {}", x.name), ..x }));
                }
            }
            f.extend(bench::fio_figures(&work.join("results")));
            if f.is_empty() {
                anyhow::bail!("no benchmark results from the {imp} boot: see {}", out.console.display());
            }
            bench::merge(&mut figs[i], f);
        }
    }
    let rows = bench::rows(&figs[0], &figs[1]);
    let md = bench::markdown(&rows);
    fs::write(res.join("bench.md"), &md)?;
    fs::write(res.join("bench.json"), serde_json::to_string_pretty(&bench::json(&rows))?)?;
    let plot = util::run_capture(
        // Debian's python3, which has python3-matplotlib (not a pyenv one on PATH).
        std::process::Command::new("/usr/bin/python3")
            .arg(p.repo.join("harness/plot_bench.py"))
            .arg(res.join("bench.json"))
            .arg(res.join("bench.png")),
    );
    println!();
    println!(
        "================ p2pdma-rs benchmarks: C vs Rust, {reps} repetitions x {rounds} boot(s) each, base kernel under {} ================",
        if o.kvm { "KVM" } else { "TCG" }
    );
    print!("{md}");
    println!("\nRust cost/C cost below 1 means the Rust path is better (faster, or more operations per second).");
    match plot {
        Ok(_) => println!("plot: {}", res.join("bench.png").display()),
        Err(e) => println!("plot failed: {e}"),
    }
    println!("raw numbers: {}", res.join("bench.json").display());
    Ok(true)
}

/// Bandwidth in MB/s of one direction of a fio JSON result.
fn fio_bw(path: &Path, dir: &str) -> Option<f64> {
    let text = fs::read_to_string(path).ok()?;
    // fio may print warnings before the JSON object.
    let json: serde_json::Value = serde_json::from_str(&text[text.find('{')?..]).ok()?;
    let job = &json["jobs"][0];
    if job["error"].as_i64().unwrap_or(1) != 0 {
        return None;
    }
    let bytes = job[dir]["io_bytes"].as_f64()?;
    let ms = job[dir]["runtime"].as_f64()?;
    if ms <= 0.0 {
        return None;
    }
    Some(bytes / 1e6 / (ms / 1e3))
}

/// What a command that boots needs, checked before its kernel build.
fn check_boot(o: &Opts) -> Result<()> {
    util::require_tools(&["qemu-system-x86_64", "busybox"])?;
    if o.kvm {
        guest::check_kvm()?;
    }
    Ok(())
}

/// Holds the cache's lock for as long as the returned file lives: commands share
/// the build tree and its `O=` directories (a mutant applied to the tree must never
/// reach another command's build or boot).
fn lock_cache(p: &Paths) -> Result<fs::File> {
    let path = p.cache.join(".lock");
    let f = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            util::step("lock", &format!("another ./run is using {}: waiting for it", p.cache.display()));
            f.lock()?;
        }
        Err(fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
    }
    Ok(f)
}

fn main() {
    let cli = cli::Cli::parse();
    // ./run asks for a parse only, so that a mistyped option fails before the
    // harness's own checks and the kernel build.
    if std::env::var_os("P2PDMA_PARSE_ONLY").is_some() {
        return;
    }
    let (cmd, o) = cli.cmd.opts();
    let check = if cmd == "build" || cmd == "series" { Ok(()) } else { check_boot(&o) };
    if let Err(e) = check {
        eprintln!("harness: error: {e:#}");
        std::process::exit(1);
    }
    let lock = paths().and_then(|p| lock_cache(&p));
    let _lock = match lock {
        Ok(f) => f,
        Err(e) => {
            eprintln!("harness: error: {e:#}");
            std::process::exit(1);
        }
    };
    let r = match cmd {
        "test" => cmd_test(&o),
        "soak" => cmd_soak(&o),
        "mutants" => cmd_mutants(&o),
        "demo" => cmd_demo(&o),
        "bench" => cmd_bench(&o),
        "build" => paths().and_then(|p| build_kernel(&p, o.profile.unwrap_or(Profile::Debug), o.clippy).map(|_| true)),
        "series" => paths().and_then(|p| match o.series.clone() {
            None => series::check(&p, o.out.clone(), o.clippy),
            Some(cli::SeriesAction::Edit { reset }) => series::edit(&p, reset).map(|_| true),
            Some(cli::SeriesAction::Export) => series::export(&p).map(|_| true),
        }),
        _ => unreachable!("command {cmd}"),
    };
    match r {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("harness: error: {e:#}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fio_json_bandwidth() {
        let dir = std::env::temp_dir().join(format!("fio-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.json");
        fs::write(&f, "note: both iodepth >= 1 and synchronous I/O engine are selected\n{\"jobs\":[{\"error\":0,\"write\":{\"io_bytes\":33554432,\"runtime\":1000}}]}").unwrap();
        let bw = fio_bw(&f, "write").unwrap();
        assert!((bw - 33.554432).abs() < 1e-9);
        assert!(fio_bw(&f, "read").is_none());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn canary_judged_on_its_own_part() {
        let dir = std::env::temp_dir().join(format!("canary-{}", std::process::id()));
        fs::create_dir_all(dir.join("canary")).unwrap();
        let warn = "[ 9.0] WARNING: CPU: 1 PID: 77 at drivers/misc/lkdtm/bugs.c:110 lkdtm_WARNING+0x1/0x2\n";
        let judged = |canary: Option<String>| Judged {
            v: judge::Verdict::default(),
            rel: judge::Reliability::default(),
            results: dir.clone(),
            canary,
        };
        // The guest never got to the canary.
        assert!(!judge_canary(&judged(None)).1);
        // The WARN came but the canary did not finish.
        assert!(!judge_canary(&judged(Some(format!("{CANARY_MARKER}\n{warn}")))).1);
        fs::write(dir.join("canary/done"), "done\n").unwrap();
        assert!(judge_canary(&judged(Some(format!("{CANARY_MARKER}\n{warn}")))).1);
        // No WARN after the marker: the splat check missed it.
        assert!(!judge_canary(&judged(Some(format!("{CANARY_MARKER}\nharness: finished\n")))).1);
        // A WARN that is not LKDTM's is not the canary.
        let other = "[ 9.0] WARNING: CPU: 0 PID: 1 at mm/x.c:1 f+0x0/0x10\n";
        assert!(!judge_canary(&judged(Some(format!("{CANARY_MARKER}\n{other}")))).1);
        fs::remove_dir_all(&dir).unwrap();
        // The marker is the line lib.sh's canary() writes to the kernel log.
        assert!(GUEST_LIB.contains(&format!("CANARY_MARKER=\"{CANARY_MARKER}\"")));
        let mut console = format!("[ 1.0] boot\nok 1 x\n[ 8.0] {CANARY_MARKER}\n{warn}");
        let tail = split_canary(&mut console).unwrap();
        assert_eq!(console, "[ 1.0] boot\nok 1 x\n");
        assert!(tail.starts_with("[ 8.0] harness: canary") && tail.contains("lkdtm"));
        assert!(split_canary(&mut "[ 1.0] boot\n".to_string()).is_none());
    }
}
