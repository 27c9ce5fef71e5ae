// SPDX-License-Identifier: GPL-2.0
//! The series: `patches/` is the one source of the kernel change.
//!
//! - `./run series edit` applies `patches/` as commits on branch `p2pdma-rs` in a git
//!   worktree of the cache's tree (`<cache>/series`), where the series is edited with
//!   git (commit, `rebase -i`, `commit --fixup`);
//! - `./run series export` writes that branch back to `patches/`;
//! - `./run series` writes the series to send (`git format-patch` with a cover letter)
//!   and checks it: every patch applies with `git am` to pristine 7.3, passes
//!   `checkpatch.pl --strict`, and builds (the directories the series has touched so
//!   far, with the test kernel's config and `CLIPPY=1`, warnings fatal); the whole
//!   series builds with `allmodconfig` (`kconfig/allmod.config`) and passes
//!   `rustfmtcheck` and `rustdoc` without warnings.
//!
//! `./run test`, `./run demo` and `./run bench` build pristine + `patches/`: what is
//! tested is what is sent.

use crate::kconfig;
use crate::kernel::{self, Paths, Profile, LLVM};
use crate::util::{self, run_capture};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The branch that holds the series in the editing worktree.
const BRANCH: &str = "p2pdma-rs";

/// The cover letter's template in the repository: subject line, blank line, body.
const COVER: &str = "patches/cover-letter.txt";

fn git(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C").arg(dir);
    // Commits made by `git am` need a committer; the author comes from the patch.
    c.env("GIT_COMMITTER_NAME", "p2pdma-rs developers").env("GIT_COMMITTER_EMAIL", "p2pdma-rs@localhost");
    c
}

/// A worktree of the cache's tree at `dir`, created detached at pristine if missing.
fn worktree(p: &Paths, dir: &Path) -> Result<()> {
    if dir.join(".git").exists() {
        return Ok(());
    }
    let _ = run_capture(git(&p.tree()).args(["worktree", "prune"]));
    run_capture(git(&p.tree()).args(["worktree", "add", "--detach"]).arg(dir).arg("pristine"))
        .with_context(|| format!("creating the worktree {}", dir.display()))?;
    Ok(())
}

/// Resets the worktree `dir` to pristine and applies `patches/` with `git am`, one
/// commit per patch.
fn apply(p: &Paths, dir: &Path, branch: Option<&str>) -> Result<Vec<PathBuf>> {
    let patches = kernel::patch_files(&p.repo)?;
    if patches.is_empty() {
        bail!("{}/patches: no patch", p.repo.display());
    }
    let _ = run_capture(git(dir).args(["am", "--abort"]));
    match branch {
        Some(b) => run_capture(git(dir).args(["checkout", "-q", "-f", "-B", b, "pristine"]))?,
        None => run_capture(git(dir).args(["checkout", "-q", "-f", "--detach", "pristine"]))?,
    };
    run_capture(git(dir).args(["clean", "-q", "-f", "-d", "-x"]))?;
    copy_ignored(p, dir)?;
    for f in &patches {
        if let Err(e) = run_capture(git(dir).args(["am", "-q", "--keep-cr"]).arg(f)) {
            let _ = run_capture(git(dir).args(["am", "--abort"]));
            bail!("{} does not apply with git am on top of the patches before it: {e:#}", f.display());
        }
    }
    Ok(patches)
}

/// Copies the files of the cache's tree that git does not track into the worktree
/// `dir`: the kernel's `.gitignore` ignores dot files (`.rustfmt.toml`,
/// `.clippy.toml`, `.kunitconfig`, ...), so the `pristine` commit lacks them, and
/// rustfmt and clippy need theirs.
fn copy_ignored(p: &Paths, dir: &Path) -> Result<()> {
    let tree = p.tree();
    for f in run_capture(git(&tree).args(["ls-files", "--others"]))?.lines() {
        let to = dir.join(f);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(tree.join(f), &to).with_context(|| format!("copying {f} into {}", dir.display()))?;
    }
    Ok(())
}

/// `./run series edit`: the editing worktree, on branch `p2pdma-rs` = pristine +
/// `patches/`. An existing one is left alone unless `reset`.
pub fn edit(p: &Paths, reset: bool) -> Result<()> {
    kernel::fetch(p)?;
    let dir = p.cache.join("series");
    let existed = dir.join(".git").exists();
    worktree(p, &dir)?;
    if existed && !reset {
        let head = run_capture(git(&dir).args(["rev-parse", "--abbrev-ref", "HEAD"]))?;
        util::step(
            "series",
            &format!(
                "{} exists (on {}); left as it is (--reset rebuilds it from patches/, dropping what is not exported)",
                dir.display(),
                head.trim()
            ),
        );
        return Ok(());
    }
    let n = apply(p, &dir, Some(BRANCH))?.len();
    util::step("series", &format!("{}: branch {BRANCH} = pristine + {n} patches", dir.display()));
    println!("Edit there with git (commit --fixup, rebase -i pristine), then ./run series export.");
    Ok(())
}

/// `./run series export`: `patches/` from branch `p2pdma-rs` of the editing worktree.
pub fn export(p: &Paths) -> Result<()> {
    let dir = p.cache.join("series");
    if !dir.join(".git").exists() {
        bail!("no {}: run ./run series edit first", dir.display());
    }
    if !run_capture(git(&dir).args(["status", "--porcelain", "--untracked-files=no"]))?.trim().is_empty() {
        bail!("{} has uncommitted changes: commit them to the series first", dir.display());
    }
    let tmp = p.cache.join("series-export");
    let _ = fs::remove_dir_all(&tmp);
    run_capture(
        git(&dir).args(["format-patch", "-q", "--zero-commit", "--no-signature", "-N", "-o"]).arg(&tmp).arg(format!("pristine..{BRANCH}")),
    )?;
    let dest = p.repo.join("patches");
    fs::create_dir_all(&dest)?;
    for f in kernel::patch_files(&p.repo)? {
        fs::remove_file(f)?;
    }
    let mut n = 0;
    for e in fs::read_dir(&tmp)? {
        let e = e?;
        fs::copy(e.path(), dest.join(e.file_name()))?;
        n += 1;
    }
    let _ = fs::remove_dir_all(&tmp);
    util::step("series", &format!("patches/: {n} patches from {BRANCH}"));
    print!("{}", run_capture(Command::new("git").arg("-C").arg(&p.repo).args(["status", "--short", "patches"]))?);
    Ok(())
}

/// Top directories to build for a patch's files: the directory of each C or Rust
/// source it touches (`rust/` for the kernel crate, helpers and bindings).
fn build_dirs(files: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in files {
        if f.starts_with("rust/") {
            out.insert("rust/".to_string());
        } else if (f.ends_with(".c") || f.ends_with(".rs") || f.ends_with("Makefile") || f.ends_with("Kconfig"))
            && !f.starts_with("tools/")
            && !f.starts_with("Documentation/")
        {
            if let Some((d, _)) = f.rsplit_once('/') {
                out.insert(format!("{d}/"));
            }
        }
    }
    out
}

/// Lines of a build's output that are diagnostics: a warning or error of a compiler,
/// clippy or rustdoc.
fn diagnostics(output: &str) -> Vec<&str> {
    output.lines().filter(|l| l.contains("warning:") || l.contains("error:") || l.contains("error[")).collect()
}

/// Runs `cmd`, appends its output to `log`, and returns it if it succeeded without
/// diagnostics.
fn checked(cmd: &mut Command, log: &mut fs::File, what: &str) -> Result<()> {
    let (ok, text) = logged(cmd, log, what)?;
    let diags = diagnostics(&text);
    if !ok || !diags.is_empty() {
        let shown: Vec<&str> = diags.iter().take(5).copied().collect();
        bail!("{what}: {} ({})", if ok { "diagnostics" } else { "failed" }, shown.join(" | "));
    }
    Ok(())
}

/// Runs `cmd` and appends its output to `log` under `what`; returns whether it
/// succeeded, and its output.
fn logged(cmd: &mut Command, log: &mut fs::File, what: &str) -> Result<(bool, String)> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    writeln!(log, "===== {what}\n{text}")?;
    Ok((out.status.success(), text))
}

/// `./run series`: writes the series and checks it. Returns whether every check passed.
pub fn check(p: &Paths, out: Option<PathBuf>, build: bool) -> Result<bool> {
    util::require_tools(kernel::BUILD_TOOLS)?;
    kernel::fetch(p)?;
    let wt = p.cache.join("series-check");
    worktree(p, &wt)?;
    let patches = apply(p, &wt, None)?;
    let n = patches.len();
    let dest = match out {
        Some(d) => d,
        None => crate::results_dir(p, "series")?.join("patches"),
    };
    let _ = fs::remove_dir_all(&dest);
    fs::create_dir_all(&dest)?;
    run_capture(git(&wt).args(["format-patch", "-q", "--cover-letter", "--no-signature", "-o"]).arg(&dest).arg("pristine..HEAD"))?;
    cover_letter(p, &dest, n)?;
    util::step("series", &format!("{n} patches and a cover letter in {}", dest.display()));

    let log_path = dest.parent().unwrap_or(&dest).join("series-check.log");
    let mut log = fs::File::create(&log_path)?;
    let commits: Vec<String> = run_capture(git(&wt).args(["rev-list", "--reverse", "pristine..HEAD"]))?.lines().map(String::from).collect();
    let mut sent: Vec<PathBuf> = fs::read_dir(&dest)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| !f.to_string_lossy().contains("0000-cover-letter"))
        .collect();
    sent.sort();
    let obj = p.cache.join("out/series");
    fs::create_dir_all(&obj)?;
    let mut dirs = BTreeSet::new();
    let mut failures = Vec::new();
    for (i, (c, file)) in commits.iter().zip(&sent).enumerate() {
        let t = Instant::now();
        let subject = run_capture(git(&wt).args(["log", "-1", "--format=%s", c]))?.trim().to_string();
        let mut results = Vec::new();
        let mut fail = |what: String, r: Result<()>| match r {
            Ok(()) => results.push(format!("{what} ok")),
            Err(e) => {
                results.push(format!("{what} FAILED"));
                failures.push(format!("{:02}/{n} {subject}: {e:#}", i + 1));
            }
        };
        // checkpatch from outside any git tree: the cache's tree has no upstream
        // history to look the ids of `Fixes:` tags up in (UNKNOWN_COMMIT_ID), and the
        // MAINTAINERS coverage of new files is checked with get_maintainer.pl below
        // (FILE_PATH_CHANGES only asks whether a patch that adds a file touches
        // MAINTAINERS, also when an existing entry covers the file).
        let mut cp = Command::new("perl");
        cp.current_dir(std::env::temp_dir())
            .arg(wt.join("scripts/checkpatch.pl"))
            .args(["--strict", "--no-tree", "--no-summary", "--show-types", "--color=never"])
            .args(["--ignore", "UNKNOWN_COMMIT_ID,FILE_PATH_CHANGES"])
            .arg(file);
        fail("checkpatch".into(), checked_checkpatch(&mut cp, &mut log, &format!("checkpatch {}", file.display())));
        if build {
            run_capture(git(&wt).args(["checkout", "-q", "--detach", c]))?;
            let files: Vec<String> =
                run_capture(git(&wt).args(["diff-tree", "--no-commit-id", "--name-only", "-r", c]))?.lines().map(String::from).collect();
            dirs.extend(build_dirs(&files));
            fail("config".into(), configure(p, &wt, &obj, &mut log));
            let mut targets: Vec<String> = vec!["rust/".into()];
            let mut rest: Vec<String> = dirs.iter().filter(|d| *d != "rust/").cloned().collect();
            let r = make(&wt, &obj, &["CLIPPY=1", "rust/"], &mut log).and_then(|_| {
                if rest.is_empty() {
                    return Ok(());
                }
                let mut a: Vec<&str> = vec!["CLIPPY=1"];
                a.extend(rest.iter().map(String::as_str));
                make(&wt, &obj, &a, &mut log)
            });
            targets.append(&mut rest);
            fail(format!("build {}", targets.join(" ")), r);
            if files.iter().any(|f| f.starts_with("tools/testing/selftests/p2pdma/")) {
                fs::create_dir_all(obj.join("kselftest/p2pdma"))?;
                let mut st = Command::new("make");
                st.arg("-C")
                    .arg(wt.join("tools/testing/selftests/p2pdma"))
                    .arg(format!("OUTPUT={}", obj.join("kselftest/p2pdma").display()));
                fail("selftests".into(), checked(&mut st, &mut log, "make selftests/p2pdma"));
            }
        }
        util::step("series", &format!("{:02}/{n} {subject}: {} ({})", i + 1, results.join(", "), util::human(t.elapsed())));
    }
    run_capture(git(&wt).args(["checkout", "-q", "--detach", commits.last().context("no commit")?]))?;
    let uncovered = unmaintained(&wt)?;
    util::step(
        "series",
        &if uncovered.is_empty() {
            "every new file has a MAINTAINERS entry".to_string()
        } else {
            format!("no MAINTAINERS entry: {}", uncovered.join(" "))
        },
    );
    if !uncovered.is_empty() {
        failures.push(format!("files without a MAINTAINERS entry: {}", uncovered.join(" ")));
    }
    if build {
        let t = Instant::now();
        let r = allmod_build(p, &wt, &dirs, &mut log);
        let ok = r.is_ok();
        if let Err(e) = r {
            failures.push(format!("allmodconfig: {e:#}"));
        }
        let all: Vec<&str> = dirs.iter().map(String::as_str).collect();
        util::step(
            "series",
            &format!(
                "allmodconfig build of {} (whole series): {} ({})",
                all.join(" "),
                if ok { "ok" } else { "FAILED" },
                util::human(t.elapsed())
            ),
        );
        for (what, target) in [("rustfmtcheck", "rustfmtcheck"), ("rustdoc", "rustdoc")] {
            let t = Instant::now();
            let r = make(&wt, &obj, &[target], &mut log);
            let ok = r.is_ok();
            if let Err(e) = r {
                failures.push(format!("{what}: {e:#}"));
            }
            util::step(
                "series",
                &format!("{what} of the whole series: {} ({})", if ok { "ok" } else { "FAILED" }, util::human(t.elapsed())),
            );
        }
    } else {
        util::step("series", "builds, rustfmtcheck and rustdoc skipped (--no-build)");
    }
    for f in &failures {
        eprintln!("  {f}");
    }
    println!("series: {n} patches, {} failure(s){}; log: {}", failures.len(), if build { "" } else { " (not built)" }, log_path.display());
    Ok(failures.is_empty())
}

/// The files the series adds that no MAINTAINERS entry covers: `get_maintainer.pl -f`
/// names no maintainer or supporter for them.
fn unmaintained(tree: &Path) -> Result<Vec<String>> {
    let added = run_capture(git(tree).args(["diff", "--diff-filter=A", "--name-only", "pristine", "HEAD"]))?;
    let mut out = Vec::new();
    for f in added.lines() {
        let mut c = Command::new("perl");
        c.current_dir(tree).args(["scripts/get_maintainer.pl", "--no-git", "--no-git-fallback", "-f", f]);
        let o = run_capture(&mut c).unwrap_or_default();
        if !o.lines().any(|l| l.contains("(maintainer:") || l.contains("(supporter:")) {
            out.push(f.to_string());
        }
    }
    Ok(out)
}

/// Findings checkpatch may make that are accepted, by type and path prefix, with the
/// reason. Tests touch device memory through `volatile` pointers so that every access
/// reaches the device (and faults, or not, where the test expects), as the mm
/// selftests do.
const ACCEPTED: &[(&str, &str, &str)] =
    &[("VOLATILE", "tools/testing/selftests/", "the selftests access p2pmem through volatile pointers on purpose")];

/// The findings of checkpatch output (`--show-types`): (type, file, text).
fn findings(text: &str) -> Vec<(String, String, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(kind) = ["ERROR:", "WARNING:", "CHECK:"].iter().find(|k| l.starts_with(*k)) else { continue };
        let ty = l[kind.len()..].split(':').next().unwrap_or("").to_string();
        let file = lines
            .get(i + 1)
            .and_then(|n| n.split_once("FILE: "))
            .map(|(_, f)| f.split(':').next().unwrap_or("").to_string())
            .unwrap_or_default();
        out.push((ty, file, l.to_string()));
    }
    out
}

/// checkpatch prints nothing but findings for a patch with `--no-summary`; every
/// finding fails, except the ones in [`ACCEPTED`], which are counted in the log.
fn checked_checkpatch(cmd: &mut Command, log: &mut fs::File, what: &str) -> Result<()> {
    let (ok, text) = logged(cmd, log, what)?;
    let all = findings(&text);
    let (accepted, bad): (Vec<_>, Vec<_>) =
        all.iter().partition(|(ty, file, _)| ACCEPTED.iter().any(|(t, prefix, _)| ty == t && file.starts_with(prefix)));
    for (t, prefix, why) in ACCEPTED {
        let n = accepted.iter().filter(|(ty, f, _)| ty == t && f.starts_with(prefix)).count();
        if n > 0 {
            writeln!(log, "accepted: {n} {t} finding(s) under {prefix}: {why}")?;
        }
    }
    if !bad.is_empty() {
        bail!("{} finding(s), first: {}", bad.len(), bad[0].2);
    }
    if !ok && accepted.is_empty() {
        bail!("checkpatch failed");
    }
    Ok(())
}

/// The test kernel's config for the tree at this patch: tinyconfig + the debug
/// profile's fragments. Symbols that later patches add are not there yet.
fn configure(p: &Paths, tree: &Path, obj: &Path, log: &mut fs::File) -> Result<()> {
    let frags: Vec<PathBuf> = Profile::Debug.fragments().iter().map(|f| p.repo.join(f)).collect();
    if !obj.join(".config").exists() {
        make_config(tree, obj, "tinyconfig", log)?;
    }
    if !obj.join("tinyconfig.base").exists() {
        fs::copy(obj.join(".config"), obj.join("tinyconfig.base"))?;
    }
    let r = kernel::merge_config(tree, obj, &obj.join("tinyconfig.base"), &frags);
    match r {
        Ok(text) => {
            writeln!(log, "===== merge_config + olddefconfig\n{text}")?;
            Ok(())
        }
        Err(e) => {
            writeln!(log, "===== merge_config + olddefconfig\n{e:#}")?;
            Err(e.context("merge_config.sh + olddefconfig"))
        }
    }
}

/// `make allmodconfig` of the whole series, with `kconfig/allmod.config` (Rust on,
/// and what would turn it off or only cost time off; the series' options as
/// allmodconfig sets them), then the directories the series touches with CLIPPY=1,
/// any warning fatal: catches what the test kernel's config hides (code built as a
/// module, options the test kernel lacks).
fn allmod_build(p: &Paths, tree: &Path, dirs: &BTreeSet<String>, log: &mut fs::File) -> Result<()> {
    let obj = p.cache.join("out/series-allmod");
    fs::create_dir_all(&obj)?;
    let frag = p.repo.join("kconfig/allmod.config");
    let (ok, _) = logged(make_cmd(tree, &obj).env("KCONFIG_ALLCONFIG", &frag).args(["-s", "allmodconfig"]), log, "make allmodconfig")?;
    if !ok {
        bail!("make allmodconfig failed");
    }
    let want = kconfig::parse(&fs::read_to_string(&frag)?);
    let have = kconfig::parse(&fs::read_to_string(obj.join(".config"))?);
    let bad = kconfig::mismatches(&want, &have);
    if !bad.is_empty() {
        bail!("kconfig/allmod.config did not take effect: {}", bad.join("; "));
    }
    make(tree, &obj, &["CLIPPY=1", "rust/"], log)?;
    let mut a: Vec<&str> = vec!["CLIPPY=1"];
    a.extend(dirs.iter().filter(|d| *d != "rust/").map(String::as_str));
    if a.len() > 1 {
        make(tree, &obj, &a, log)?;
    }
    Ok(())
}

/// A config target: Kconfig's notes about the fragments (symbols a patch does not add
/// yet) are not build diagnostics; only failure counts.
fn make_config(tree: &Path, obj: &Path, target: &str, log: &mut fs::File) -> Result<()> {
    let (ok, _) = logged(make_cmd(tree, obj).args(["-s", target]), log, &format!("make {target}"))?;
    if !ok {
        bail!("make {target} failed");
    }
    Ok(())
}

/// `make -C <tree> O=<obj> LLVM=-19` with the kernel build environment.
fn make_cmd(tree: &Path, obj: &Path) -> Command {
    let mut c = Command::new("make");
    c.arg("-C").arg(tree).arg(format!("O={}", obj.display())).arg(LLVM);
    kernel::build_env(&mut c);
    c
}

fn make(tree: &Path, obj: &Path, args: &[&str], log: &mut fs::File) -> Result<()> {
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    checked(make_cmd(tree, obj).arg(format!("-j{jobs}")).args(args), log, &format!("make {}", args.join(" ")))
}

/// Fills the cover letter `git format-patch` wrote from `patches/cover-letter.txt`,
/// with the latest test summary and benchmark table of this repository if present.
fn cover_letter(p: &Paths, dest: &Path, n: usize) -> Result<()> {
    let path = dest.join("0000-cover-letter.patch");
    let text = fs::read_to_string(&path)?;
    let template = fs::read_to_string(p.repo.join(COVER)).with_context(|| format!("reading {COVER}"))?;
    let (subject, body) = template.split_once("\n\n").context("cover letter template: subject, blank line, body")?;
    let latest = |what: &str, file: &str| fs::read_to_string(p.repo.join("results").join(format!("latest-{what}")).join(file)).ok();
    let tests = latest("test", "summary.txt")
        .map(|s| {
            // The headline of each boot and the total; not each known failure and report.
            let skip = |l: &str| {
                let t = l.trim_start();
                t.is_empty() || t.starts_with("XFAIL") || t.starts_with("report:")
            };
            s.lines().filter(|l| !skip(l)).map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
        })
        .unwrap_or_else(|| "  (no test run in this repository yet: ./run test)".into());
    let bench = full_bench(&p.repo.join("results"))
        .map(|(dir, md)| format!("{}\n(results/{dir}, ./run bench)", md.trim_end()))
        .unwrap_or_else(|| "(no full benchmark run in this repository yet: ./run bench)".into());
    let body = body.replace("@PATCHES@", &n.to_string()).replace("@TESTS@", &tests).replace("@BENCH@", bench.trim_end());
    if !text.contains("*** SUBJECT HERE ***") || !text.contains("*** BLURB HERE ***") {
        bail!("{}: no placeholders from git format-patch", path.display());
    }
    fs::write(&path, text.replace("*** SUBJECT HERE ***", subject.trim()).replace("*** BLURB HERE ***", body.trim_end()))?;
    Ok(())
}

/// The table of the newest benchmark run that covers every figure (`./run bench`,
/// not `--only`), and its directory name.
fn full_bench(results: &Path) -> Option<(String, String)> {
    let mut dirs: Vec<String> = fs::read_dir(results)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with("-bench") && !n.starts_with("latest"))
        .collect();
    dirs.sort();
    dirs.into_iter().rev().find_map(|d| {
        let md = fs::read_to_string(results.join(&d).join("bench.md")).ok()?;
        (1..=7).all(|f| md.contains(&format!("] {f} "))).then_some((d, md))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_built_per_patch() {
        let f = |v: &[&str]| build_dirs(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).into_iter().collect::<Vec<_>>();
        assert_eq!(f(&["mm/gup.c"]), ["mm/"]);
        assert_eq!(f(&["include/linux/memremap.h", "mm/memremap.c"]), ["mm/"]);
        assert_eq!(f(&["rust/kernel/genalloc.rs", "rust/helpers/genalloc.c", "rust/kernel/Kconfig.test"]), ["rust/"]);
        assert_eq!(f(&["drivers/pci/p2pdma_rs/vma.rs", "drivers/pci/Kconfig"]), ["drivers/pci/", "drivers/pci/p2pdma_rs/"]);
        assert!(f(&["tools/testing/selftests/p2pdma/p2pmem_test.c", "Documentation/driver-api/pci/p2pdma.rst"]).is_empty());
    }

    #[test]
    fn diagnostics_are_found() {
        let out = "  CC      mm/gup.o\nmm/gup.c:1:2: warning: unused variable 'x'\n  RUSTC L rust/kernel.o\nwarning: this could be simpler\nerror[E0425]: cannot find value\n";
        assert_eq!(diagnostics(out).len(), 3);
        assert!(diagnostics("  CC      mm/gup.o\n  LD      vmlinux\n").is_empty());
    }

    #[test]
    fn checkpatch_findings() {
        let out = "WARNING:VOLATILE: Use of volatile is usually wrong\n#569: FILE: tools/testing/selftests/p2pdma/p2pdma_lib.h:466:\n+static x\n\nCHECK:BIT_MACRO: Prefer using the BIT macro\n#150: FILE: drivers/pci/p2pdma.c:34:\n";
        let f = findings(out);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].0.as_str(), f[0].1.as_str()), ("VOLATILE", "tools/testing/selftests/p2pdma/p2pdma_lib.h"));
        assert_eq!((f[1].0.as_str(), f[1].1.as_str()), ("BIT_MACRO", "drivers/pci/p2pdma.c"));
    }
}
