// SPDX-License-Identifier: GPL-2.0
//! Judging one boot: test results, KUnit, splats, leaks, taint.

use crate::splat;
use crate::tap::{self, Status};
use std::fs;
use std::path::Path;

/// The verdict of one boot.
#[derive(Debug, Default)]
pub struct Verdict {
    pub passed: Vec<String>,
    pub failed: Vec<String>,
    /// Problems that are not a single test: splats, leaks, a missing result file.
    pub problems: Vec<String>,
    /// Things to report that are neither pass nor fail (emulator limitations).
    pub notes: Vec<String>,
    pub splats: Vec<splat::Splat>,
    /// Failures this implementation is known for (`harness/known-failures.txt`), with
    /// the reason: they do not fail the run.
    pub xfailed: Vec<String>,
    /// Known failures that passed this time: reported, they do not fail the run.
    pub xpassed: Vec<String>,
    /// Tests that skipped. A skip fails the run: the harness's guest has every
    /// device and capability the tests look for, so a skip means one went missing.
    pub skipped: Vec<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.problems.is_empty() && self.skipped.is_empty()
    }
}

/// Counts over every boot of a run, for its last lines.
#[derive(Debug, Default)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub xfailed: usize,
    pub splats: usize,
    pub hangs: usize,
    pub leaks: usize,
    pub faults_injected: usize,
    pub faults_survived: usize,
    /// Whether any boot ran the fault-injection test.
    pub faults_run: bool,
}

impl Totals {
    pub fn add(&mut self, v: &Verdict, r: &Reliability) {
        self.passed += v.passed.len();
        self.failed += v.failed.len() + v.problems.len();
        self.skipped += v.skipped.len();
        self.xfailed += v.xfailed.len();
        self.splats += v.splats.len();
        self.hangs += r.hangs;
        self.leaks += r.leaks + v.problems.iter().filter(|p| p.starts_with("kmemleak")).count();
        self.faults_injected += r.faults_injected;
        self.faults_survived += r.faults_survived;
        self.faults_run |= v.passed.iter().chain(&v.failed).any(|t| t.starts_with("p2pmem_fault_test"));
    }

    /// `(survived, injected)` if fault injection ran.
    pub fn faults(&self) -> Option<(usize, usize)> {
        self.faults_run.then_some((self.faults_survived, self.faults_injected))
    }

    /// The one-line summary: cases, stress rounds, splats, hangs, leaked pages or
    /// objects, fault injection (`faults=` survived/injected, or `not-run`), and the
    /// latest soak (`longrun=`, or `none`).
    pub fn summary_line(&self, iterations: u32, faults: Option<(usize, usize)>, longrun: Option<&str>) -> String {
        format!(
            "summary: cases={} iterations={iterations} splats={} hangs={} leaked={} faults={} longrun={}",
            self.passed + self.failed + self.skipped + self.xfailed,
            self.splats,
            self.hangs,
            self.leaks,
            faults.map_or("not-run".to_string(), |(s, i)| format!("{s}/{i}")),
            longrun.unwrap_or("none")
        )
    }

    /// The standard counts line.
    pub fn counts_line(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped, {} expected failure(s) (harness/known-failures.txt)",
            self.passed, self.failed, self.skipped, self.xfailed
        )
    }
}

/// The `longrun=` figure of the latest soak that finished (the `longrun:` line of
/// `results/<date>-soak/soak.txt`, `<base rounds>+<debug rounds>@<when>:ok|FAILED`),
/// if one has run in this repository: a soak stopped before it wrote its figure
/// leaves the previous one standing.
pub fn latest_soak(results: &Path) -> Option<String> {
    let dirs = crate::util::result_dirs(results, "soak");
    dirs.iter().rev().find_map(|d| {
        let text = fs::read_to_string(d.join("soak.txt")).ok()?;
        text.lines().find_map(|l| l.strip_prefix("longrun: ")).map(|l| l.trim().to_string())
    })
}

/// The tests a kselftest source defines, named as its TAP output names them: for a
/// C file, `fixture.test` for each `TEST_F()`/`TEST_F_TIMEOUT()` and `global.test`
/// for each `TEST()`/`TEST_SIGNAL()` (kselftest_harness.h); for a shell script, the
/// literal names of its `ok <n> <suite>.<test>` lines. The sources are the only list
/// of tests: nothing else names them.
pub fn tests_in_source(text: &str, script: bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        let names: Vec<String> = if script {
            line.match_indices("ok ")
                .filter_map(|(i, _)| {
                    let mut w = line[i + 3..].split_whitespace();
                    let n = w.next()?;
                    let name = w.next()?.trim_end_matches('"');
                    let plain = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '.';
                    (n.chars().all(|c| c.is_ascii_digit() || c == '$' || c.is_ascii_alphabetic())
                        && name.contains('.')
                        && name.chars().all(plain))
                    .then(|| name.to_string())
                })
                .collect()
        } else {
            let l = line.trim_start();
            let Some((mac, rest)) = l.split_once('(') else { continue };
            let args: Vec<&str> = rest.split([',', ')']).map(str::trim).collect();
            match mac {
                "TEST_F" | "TEST_F_TIMEOUT" | "TEST_F_SIGNAL" if args.len() >= 2 => vec![format!("{}.{}", args[0], args[1])],
                "TEST" | "TEST_SIGNAL" if !args.is_empty() => vec![format!("global.{}", args[0])],
                _ => continue,
            }
        };
        for n in names {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

/// The KUnit suites a series adds: the names in `kunit_tests(<name>)` on its added
/// lines.
pub fn kunit_suites_in_patch(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .filter_map(|l| {
            let rest = &l[l.find("kunit_tests(")? + "kunit_tests(".len()..];
            Some(rest[..rest.find(')')?].trim().to_string())
        })
        .collect()
}

/// Parses a known-failures file: `<impl> <binary>: <test> # reason` per line; returns
/// (binary, test, reason) for implementation `imp`.
pub fn known_failures(text: &str, imp: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let (entry, reason) = l.split_once('#').unwrap_or((l, ""));
            let (i, rest) = entry.trim().split_once(char::is_whitespace)?;
            let (b, t) = rest.split_once(':')?;
            (i == imp).then(|| (b.trim().to_string(), t.trim().to_string(), reason.trim().to_string()))
        })
        .collect()
}

/// Judges the TAP output of one kselftest binary against the tests it must run.
/// `known` holds (test, reason) of the failures this implementation is known for.
pub fn judge_tap(v: &mut Verdict, binary: &str, text: Option<&str>, rc: Option<i32>, expected: &[String], known: &[(String, String)]) {
    let Some(text) = text else {
        v.problems.push(format!("{binary}: no output (did it run?)"));
        v.failed.extend(expected.iter().map(|t| format!("{binary}: {t} (missing)")));
        return;
    };
    let rep = tap::parse(text);
    if let Some(b) = &rep.bail_out {
        v.problems.push(format!("{binary}: bailed out: {b}"));
    }
    let ran = rep.top().count();
    match rep.plan {
        Some(n) if n != ran => v.problems.push(format!("{binary}: planned {n} tests, {ran} reported (crashed?)")),
        None => v.problems.push(format!("{binary}: no TAP plan")),
        _ => {}
    }
    let mut xfails = 0;
    for p in rep.top() {
        let name = format!("{binary}: {}", p.name);
        let why = known.iter().find(|(t, _)| *t == p.name).map(|(_, r)| r.as_str());
        match (&p.status, why) {
            (Status::Pass, None) => v.passed.push(name),
            (Status::Pass, Some(why)) => {
                v.passed.push(name.clone());
                v.xpassed.push(format!("{name} passed, though listed as a known failure ({why})"));
            }
            (Status::Fail, None) => v.failed.push(name),
            (Status::Fail, Some(why)) => {
                xfails += 1;
                v.xfailed.push(format!("{name}: {why}"));
            }
            (Status::Skip(why), _) => v.skipped.push(format!("{name} (skipped: {why})")),
        }
    }
    for t in expected {
        if !rep.top().any(|p| &p.name == t) {
            v.failed.push(format!("{binary}: {t} (expected, not run)"));
        }
    }
    let mine = |f: &String| f.starts_with(&format!("{binary}:"));
    if rc != Some(0) && xfails == 0 && !v.failed.iter().any(mine) && !v.skipped.iter().any(mine) {
        v.problems.push(format!("{binary}: exit status {rc:?} with no failed test"));
    }
}

/// Judges KUnit results in the console log: every case must pass, and each
/// expected suite must have run.
pub fn judge_kunit(v: &mut Verdict, console: &str, expected_suites: &[String]) {
    let rep = tap::parse(&kunit_section(console));
    for p in rep.leaves() {
        let name = format!("kunit: {}", p.name);
        match &p.status {
            Status::Pass => v.passed.push(name),
            Status::Fail => v.failed.push(name),
            Status::Skip(why) => v.skipped.push(format!("{name} (skipped: {why})")),
        }
    }
    for s in expected_suites {
        if !rep.top().any(|p| &p.name == s) {
            v.failed.push(format!("kunit: suite {s} (expected, not run)"));
        }
    }
}

/// KUnit prints its KTAP at boot, before init runs; the rest of the log is ours.
fn kunit_section(console: &str) -> String {
    let mut out = String::new();
    for l in console.lines() {
        let body = tap::strip_kernel_prefix(l);
        if body.starts_with("harness: guest up") {
            break;
        }
        out.push_str(body);
        out.push('\n');
    }
    out
}

/// Scans the console, kmemleak and taint.
pub fn judge_kernel(v: &mut Verdict, console: &str, results: &Path, qemu_stderr: &str) {
    v.splats = splat::scan(console);
    for s in &v.splats {
        v.problems.push(format!("kernel splat ({}) at console line {}: {}", s.kind, s.line, s.text));
    }
    match fs::read_to_string(results.join("kmemleak.txt")) {
        Ok(t) if !t.trim().is_empty() => {
            let n = t.matches("unreferenced object").count();
            v.problems.push(format!("kmemleak: {n} unreferenced object(s), see {}", results.join("kmemleak.txt").display()));
        }
        _ => {}
    }
    if let Ok(t) = fs::read_to_string(results.join("tainted")) {
        if let Ok(n) = t.trim().parse::<u64>() {
            let bad = splat::bad_taint(n);
            if !bad.is_empty() {
                v.problems.push(format!("kernel tainted: {bad} ({n})"));
            }
        }
    }
    if qemu_stderr.contains("Blocked re-entrant IO") {
        v.notes.push(
            "QEMU printed 'Blocked re-entrant IO on MemoryRegion: nvme-cmb': an emulator limitation for \
             P2P into a busy CMB; data checks in this boot may reflect the emulator"
                .into(),
        );
    }
}

/// Figures of the reliability tests (misuse and stress binaries) of one boot.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reliability {
    pub cases: usize,
    pub failed: usize,
    pub iterations: u32,
    pub splats: usize,
    pub hangs: usize,
    pub leaks: usize,
    /// Allocation failures `p2pmem_fault_test` injected, and those that ended
    /// cleanly (`# faults: injected=N survived=M` lines).
    pub faults_injected: usize,
    pub faults_survived: usize,
}

impl Reliability {
    pub fn summary(&self, imp: &str) -> String {
        format!(
            "reliability [{imp}]: {} misuse/stress cases ({} failed), {} stress rounds each, \
             {} splat(s), {} hang(s), {} leak(s), {} of {} injected failure(s) survived",
            self.cases, self.failed, self.iterations, self.splats, self.hangs, self.leaks, self.faults_survived, self.faults_injected
        )
    }
}

/// Counts the reliability figures from the TAP of the misuse and stress tests.
pub fn reliability(v: &Verdict, results: &Path, iterations: u32, timed_out: bool) -> Reliability {
    let mut r = Reliability { iterations, splats: v.splats.len(), ..Default::default() };
    r.hangs = usize::from(timed_out) + v.splats.iter().filter(|s| matches!(s.kind, "hung task" | "soft lockup" | "RCU stall")).count();
    // One TAP file per binary and provider (`<binary>@<provider>.tap`).
    let mut files: Vec<_> = fs::read_dir(results).map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default();
    files.sort();
    for f in files {
        let name = f.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".tap") else { continue };
        let bin = stem.split('@').next().unwrap_or(stem);
        if bin == "p2pmem_fault_test" {
            let (i, s) = fault_counts(&fs::read_to_string(&f).unwrap_or_default());
            r.faults_injected += i;
            r.faults_survived += s;
        }
        if !["p2pmem_misuse_test", "p2pmem_stress_test", "p2pmem_bar_test"].contains(&bin) {
            continue;
        }
        let Ok(text) = fs::read_to_string(&f) else { continue };
        let rep = tap::parse(&text);
        r.cases += rep.top().count();
        r.failed += rep.top().filter(|p| p.status != Status::Pass).count();
        r.hangs += text.matches("Test terminated by timeout").count();
        r.leaks += reliability_leaks(&text);
    }
    r
}

/// Sums the `# faults: injected=N survived=M` lines of a TAP file.
fn fault_counts(tap: &str) -> (usize, usize) {
    let mut out = (0, 0);
    for l in tap.lines().filter_map(|l| l.trim().strip_prefix("# faults: ")) {
        for kv in l.split_whitespace() {
            match kv.split_once('=') {
                Some(("injected", n)) => out.0 += n.parse::<usize>().unwrap_or(0),
                Some(("survived", n)) => out.1 += n.parse::<usize>().unwrap_or(0),
                _ => {}
            }
        }
    }
    out
}

/// Failed p2pmem/available checks (pages not returned to the pool).
fn reliability_leaks(tap: &str) -> usize {
    tap.lines().filter(|l| l.contains("p2p_wait_available") && l.contains("Expected")).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reliability_counts() {
        let dir = std::env::temp_dir().join(format!("rel-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("p2pmem_stress_test@nvme.tap"),
            "1..2\nok 1 stress.a\n# p2pmem_stress_test.c:60:b:Expected self->avail (100) == p2p_wait_available(&d, self->avail, 10000, NULL) (96)\n# b: Test terminated by timeout\nnot ok 2 stress.b\n",
        )
        .unwrap();
        fs::write(dir.join("p2pmem_misuse_test.tap"), "1..1\nok 1 misuse.x\n").unwrap();
        let v = Verdict::default();
        let r = reliability(&v, &dir, 7, false);
        assert_eq!(r, Reliability { cases: 3, failed: 1, iterations: 7, splats: 0, hangs: 1, leaks: 1, ..Default::default() });
        fs::write(
            dir.join("p2pmem_fault_test@nvme.tap"),
            "1..2\n# faults: injected=12 survived=12\nok 1 fault.mmap\n# faults: injected=3 survived=2\nnot ok 2 fault.fork\n",
        )
        .unwrap();
        let r = reliability(&v, &dir, 7, false);
        assert_eq!((r.faults_injected, r.faults_survived), (15, 14));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn known_failures_are_xfail_and_xpass() {
        let known = known_failures("# comment\nc t: a.x # reason x\nc t: a.y # reason y\nrust t: a.z # other impl\n", "c");
        assert_eq!(known, vec![("t".into(), "a.x".into(), "reason x".into()), ("t".into(), "a.y".into(), "reason y".into())]);
        let k: Vec<(String, String)> = known.into_iter().map(|(_, t, r)| (t, r)).collect();
        let mut v = Verdict::default();
        judge_tap(&mut v, "t@nvme", Some("1..3\nnot ok 1 a.x\nok 2 a.y\nok 3 a.w\n"), Some(1), &[], &k);
        assert!(v.ok(), "{v:?}");
        assert_eq!(v.xfailed, vec!["t@nvme: a.x: reason x".to_string()]);
        assert_eq!(v.xpassed.len(), 1);
        assert_eq!(v.passed.len(), 2);
        // An unlisted failure still fails.
        let mut v = Verdict::default();
        judge_tap(&mut v, "t", Some("1..1\nnot ok 1 a.w\n"), Some(1), &[], &k);
        assert!(!v.ok());
    }

    #[test]
    fn tap_missing_and_skipped_fail() {
        let mut v = Verdict::default();
        let text = "TAP version 13\n1..2\nok 1 a.x\nok 2 a.y # SKIP no device\n";
        judge_tap(&mut v, "t", Some(text), Some(0), &["a.x".into(), "a.y".into(), "a.z".into()], &[]);
        assert_eq!(v.passed, ["t: a.x"]);
        assert_eq!(v.skipped, ["t: a.y (skipped: no device)"]);
        assert_eq!(v.failed, ["t: a.z (expected, not run)"]);
        assert!(!v.ok());
    }

    #[test]
    fn tap_crash_midway() {
        let mut v = Verdict::default();
        judge_tap(&mut v, "t", Some("1..3\nok 1 a\n"), Some(139), &["a".into()], &[]);
        assert!(v.problems.iter().any(|p| p.contains("planned 3")));
        assert!(!v.ok());
    }

    #[test]
    fn tap_all_good() {
        let mut v = Verdict::default();
        judge_tap(&mut v, "t", Some("1..1\nok 1 a\n"), Some(0), &["a".into()], &[]);
        assert!(v.ok(), "{v:?}");
    }

    #[test]
    fn kunit_from_console() {
        let console = "[    1.0] KTAP version 1\n[    1.0] 1..1\n[    1.1]     # Subtest: s\n[    1.1]     1..1\n[    1.2]     ok 1 c\n[    1.3] ok 1 s\n[    2.0] harness: guest up\nok 1 later\n";
        let mut v = Verdict::default();
        judge_kunit(&mut v, console, &["s".into(), "missing".into()]);
        assert_eq!(v.passed, ["kunit: s.c"]);
        assert_eq!(v.failed, ["kunit: suite missing (expected, not run)"]);
    }

    #[test]
    fn latest_finished_soak() {
        let dir = std::env::temp_dir().join(format!("soaks-{}", std::process::id()));
        for d in ["20260101-000000-soak", "20260102-000000-soak", "20260103-000000-soak-lazy"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        assert_eq!(latest_soak(&dir), None);
        fs::write(dir.join("20260101-000000-soak/soak.txt"), "== x\nlongrun: 200+20@20260101-000000:ok\n").unwrap();
        fs::write(dir.join("20260103-000000-soak-lazy/soak.txt"), "longrun: 0+0@x:FAILED\n").unwrap();
        // The newest soak stopped before writing its figure: the previous one stands.
        assert_eq!(latest_soak(&dir).as_deref(), Some("200+20@20260101-000000:ok"));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kernel_problems() {
        let dir = std::env::temp_dir().join(format!("judge-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("tainted"), "512\n").unwrap();
        fs::write(dir.join("kmemleak.txt"), "unreferenced object 0xffff (size 64):\n").unwrap();
        let mut v = Verdict::default();
        judge_kernel(&mut v, "[ 1.0] WARNING: CPU: 0 PID: 1 at x.c:1 f\n", &dir, "Blocked re-entrant IO on MemoryRegion: nvme-cmb");
        assert_eq!(v.splats.len(), 1);
        assert_eq!(v.problems.len(), 3, "{:?}", v.problems);
        assert_eq!(v.notes.len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tests_named_by_the_sources() {
        let c = "FIXTURE(p2pmem) {\n};\nTEST_F(p2pmem, mmap_rw)\n{\n}\n  TEST_F_TIMEOUT(misuse, core_dump, TIMEOUT)\nTEST(lone)\n/* TEST_F(x, y) in a comment is not at a line start */\nTEST_HARNESS_MAIN\n";
        assert_eq!(tests_in_source(c, false), ["p2pmem.mmap_rw", "misuse.core_dump", "global.lone"]);
        let sh = "echo \"1..2\"\n\techo \"ok 1 fio.provider_a # SKIP fio is not installed\"\n\techo \"ok 2 fio.provider_b # SKIP\"\n\t\techo \"ok $n fio.$1\"\n\t\techo \"not ok $n fio.$1\"\n\techo \"ok 1 fio.provider_a\"\n";
        assert_eq!(tests_in_source(sh, true), ["fio.provider_a", "fio.provider_b"]);
    }

    #[test]
    fn kunit_suites_of_a_patch() {
        let p = "+++ b/rust/kernel/genalloc.rs\n+#[cfg(CONFIG_RUST_GENALLOC_KUNIT_TEST)]\n+#[macros::kunit_tests(rust_kernel_genalloc)]\n #[kunit_tests(old_one)]\n-#[kunit_tests(gone)]\n";
        assert_eq!(kunit_suites_in_patch(p), ["rust_kernel_genalloc"]);
    }
}
