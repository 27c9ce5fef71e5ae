// SPDX-License-Identifier: GPL-2.0
//! Mutants: deliberately broken kernels that show the selftests can fail.
//!
//! A mutant is `harness/mutants/<name>.patch`: a header naming what it breaks and
//! the tests that must then fail, and a diff against the tree the series gives:
//!
//! ```text
//! Mutant: pages are not cleared when they come back to the pool
//! Expect-fail: p2pmem_test:p2pmem.zeroed_across_processes p2pmem_test:p2pmem.map_populate
//! Kernel: debug        (optional: the kernel it needs, base by default)
//!
//! diff --git a/drivers/pci/p2pdma_rs/pool.rs b/drivers/pci/p2pdma_rs/pool.rs
//! ...
//! ```
//!
//! `./run mutants` builds the kernel (base by default) once per mutant and runs only
//! the named tests (kselftest `-r fixture.test`) on the Rust implementation, on every
//! provider. A named test is caught when it reports `not ok` on some provider, or
//! when the guest died or splatted while it ran; a test that passes, skips or never
//! runs under its mutant is not, and fails the command.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

use crate::kernel::Profile;
use crate::tap::{self, Status};

/// One mutant patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutant {
    pub name: String,
    /// What it breaks (the `Mutant:` line).
    pub what: String,
    /// `(binary, fixture.test)` of every test that must fail.
    pub expect_fail: Vec<(String, String)>,
    /// The kernel it needs (`Kernel: debug`: fault injection, KASAN), if not base.
    pub kernel: Option<Profile>,
    pub path: PathBuf,
}

impl Mutant {
    /// The test programs the mutant's boot runs, sorted, once each.
    pub fn programs(&self) -> Vec<String> {
        let mut p: Vec<String> = self.expect_fail.iter().map(|(b, _)| b.clone()).collect();
        p.sort();
        p.dedup();
        p
    }

    /// The kselftest arguments that select the mutant's tests of `binary`
    /// (`-r fixture.test`: exact, whatever other fixtures call their tests).
    pub fn args(&self, binary: &str) -> String {
        self.expect_fail.iter().filter(|(b, _)| b == binary).map(|(_, t)| format!("-r {t}")).collect::<Vec<_>>().join(" ")
    }
}

/// Parses a mutant's header; `name` is its file name without `.patch`.
pub fn parse(name: &str, path: &Path, text: &str) -> Result<Mutant> {
    let mut what = None;
    let mut kernel = None;
    let mut expect_fail = Vec::new();
    for line in text.lines().take_while(|l| !l.starts_with("diff ")) {
        if let Some(w) = line.strip_prefix("Mutant:") {
            what = Some(w.trim().to_string());
        } else if let Some(k) = line.strip_prefix("Kernel:") {
            kernel = Some(match k.trim() {
                "base" => Profile::Base,
                "debug" => Profile::Debug,
                k => bail!("mutant {name}: Kernel: {k:?} is neither base nor debug"),
            });
        } else if let Some(list) = line.strip_prefix("Expect-fail:") {
            for t in list.split_whitespace() {
                let (bin, test) = t.split_once(':').with_context(|| format!("mutant {name}: {t:?} is not <binary>:<fixture>.<test>"))?;
                if !test.contains('.') || bin.is_empty() {
                    bail!("mutant {name}: {t:?} is not <binary>:<fixture>.<test>");
                }
                expect_fail.push((bin.to_string(), test.to_string()));
            }
        }
    }
    if !text.lines().any(|l| l.starts_with("diff --git ")) {
        bail!("mutant {name}: no diff");
    }
    let what = what.with_context(|| format!("mutant {name}: no Mutant: line"))?;
    if expect_fail.is_empty() {
        bail!("mutant {name}: no Expect-fail: tests");
    }
    Ok(Mutant { name: name.to_string(), what, expect_fail, kernel, path: path.to_path_buf() })
}

/// Every mutant in `dir`, by name; only those named in `only` when it is given.
pub fn load(dir: &Path, only: Option<&[String]>) -> Result<Vec<Mutant>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".patch")) else {
            continue;
        };
        if only.is_some_and(|o| !o.iter().any(|x| x == name)) {
            continue;
        }
        out.push(parse(name, &path, &fs::read_to_string(&path)?)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(o) = only {
        if let Some(missing) = o.iter().find(|n| !out.iter().any(|m| &m.name == *n)) {
            bail!("no mutant {missing} in {}", dir.display());
        }
    }
    Ok(out)
}

/// How a test fared under its mutant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Reported `not ok` on these runs (`binary@provider`).
    Failed(Vec<String>),
    /// Started and never reported on these runs, and the guest died or splatted:
    /// the test was running when the kernel broke.
    Crashed(Vec<String>),
    /// Skipped wherever it ran (the mutant's boot could not run it).
    Skipped,
    /// Never started (no output, or the guest died before it).
    NotRun,
    /// Passed wherever it ran.
    Survived,
}

impl Outcome {
    pub fn caught(&self) -> bool {
        matches!(self, Outcome::Failed(_) | Outcome::Crashed(_))
    }
}

/// Whether the kselftest output `text` shows `test` (`fixture.test`) started:
/// `#  RUN           fixture.test ...`.
fn started(text: &str, test: &str) -> bool {
    text.lines().any(|l| {
        let l = tap::strip_kernel_prefix(l).trim_start_matches('#').trim_start();
        l.strip_prefix("RUN").is_some_and(|r| r.trim().trim_end_matches("...").trim() == test)
    })
}

/// Judges `test` from the output of each run of its program (`(run, text)`, `None`
/// when the run left no output); `broken` says whether the guest died or splatted.
pub fn judge_test(runs: &[(String, Option<String>)], test: &str, broken: bool) -> Outcome {
    let (mut failed, mut crashed) = (Vec::new(), Vec::new());
    let (mut passed, mut skipped) = (0, 0);
    for (run, text) in runs {
        let Some(text) = text else { continue };
        let rep = tap::parse(text);
        let status = rep.top().find(|p| p.name == test).map(|p| p.status.clone());
        match status {
            Some(Status::Fail) => failed.push(run.clone()),
            Some(Status::Pass) => passed += 1,
            Some(Status::Skip(_)) => skipped += 1,
            None if broken && started(text, test) => crashed.push(run.clone()),
            None => {}
        }
    }
    if !failed.is_empty() {
        Outcome::Failed(failed)
    } else if !crashed.is_empty() {
        Outcome::Crashed(crashed)
    } else if passed > 0 {
        Outcome::Survived
    } else if skipped > 0 {
        Outcome::Skipped
    } else {
        Outcome::NotRun
    }
}

/// How one test fared under a mutant: binary, test, outcome.
pub type Judgement = (String, String, Outcome);

/// Writes a mutant's judgements (`outcome.txt` next to its boot) under `key` (the
/// series' tree and the mutant's blob), so that later runs can use them while
/// neither has changed.
pub fn save(path: &Path, key: &str, judged: &[Judgement]) -> Result<()> {
    let mut text = format!("key {key}\n");
    for (bin, test, o) in judged {
        let (kind, runs) = match o {
            Outcome::Failed(r) => ("failed", r.join(",")),
            Outcome::Crashed(r) => ("crashed", r.join(",")),
            Outcome::Skipped => ("skipped", "-".to_string()),
            Outcome::NotRun => ("notrun", "-".to_string()),
            Outcome::Survived => ("survived", "-".to_string()),
        };
        text.push_str(&format!("{bin} {test} {kind} {runs}\n"));
    }
    Ok(fs::write(path, text)?)
}

/// What `save` wrote: the key the judgements were made under, and the judgements.
pub fn saved(text: &str) -> Option<(&str, Vec<Judgement>)> {
    let mut lines = text.lines();
    let key = lines.next()?.strip_prefix("key ")?;
    let judgements = lines
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [bin, test, kind, runs] = f[..] else { return None };
            let runs = || runs.split(',').map(str::to_string).collect();
            let o = match kind {
                "failed" => Outcome::Failed(runs()),
                "crashed" => Outcome::Crashed(runs()),
                "skipped" => Outcome::Skipped,
                "notrun" => Outcome::NotRun,
                "survived" => Outcome::Survived,
                _ => return None,
            };
            Some((bin.to_string(), test.to_string(), o))
        })
        .collect::<Option<_>>()?;
    Some((key, judgements))
}

/// The evidence table: every selftest case (`expected`, `(binary, test)`), and how it
/// was shown to fail: by the mutants of this run that name it (`judged`: mutant
/// name, binary, test, outcome), and by the C path's known failures (`known_c`:
/// binary, test, reason), which every `./run test` shows.
pub fn evidence(
    expected: &[(String, String)],
    known_c: &[(String, String, String)],
    judged: &[(String, String, String, Outcome)],
) -> String {
    let mut out = String::from("| test | shown to fail by |\n|---|---|\n");
    let mut shown = 0;
    for (bin, test) in expected {
        let mut how = Vec::new();
        for (m, b, t, o) in judged {
            if b == bin && t == test {
                how.push(match o {
                    Outcome::Failed(_) => format!("mutant `{m}` (not ok)"),
                    Outcome::Crashed(_) => format!("mutant `{m}` (guest died or splatted)"),
                    Outcome::Survived => format!("**not** by mutant `{m}` (passed)"),
                    Outcome::Skipped => format!("not by mutant `{m}` (skipped)"),
                    Outcome::NotRun => format!("not by mutant `{m}` (did not run)"),
                });
            }
        }
        if let Some((_, _, why)) = known_c.iter().find(|(b, t, _)| b == bin && t == test) {
            how.push(format!("the C path (known failure: {why})"));
        }
        let ok =
            known_c.iter().any(|(b, t, _)| b == bin && t == test) || judged.iter().any(|(_, b, t, o)| b == bin && t == test && o.caught());
        shown += usize::from(ok);
        if how.is_empty() {
            how.push("**not shown yet**".to_string());
        }
        out.push_str(&format!("| {bin}: {test} | {} |\n", how.join("; ")));
    }
    out.push_str(&format!("\n{shown} of {} tests shown to fail.\n", expected.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str =
        "Mutant: no clearing\nExpect-fail: p2pmem_test:p2pmem.a p2pmem_test:p2pmem.b p2pmem_bar_test:bar.c\n\ndiff --git a/x b/x\n";

    #[test]
    fn parses_header() {
        let m = parse("noclear", Path::new("/m/noclear.patch"), M).unwrap();
        assert_eq!(m.what, "no clearing");
        assert_eq!(m.expect_fail.len(), 3);
        assert_eq!(m.programs(), vec!["p2pmem_bar_test".to_string(), "p2pmem_test".to_string()]);
        assert_eq!(m.args("p2pmem_test"), "-r p2pmem.a -r p2pmem.b");
        assert_eq!(m.args("p2pmem_bar_test"), "-r bar.c");
        assert_eq!(m.kernel, None);
        let d = parse("x", Path::new("x"), &M.replace("Mutant:", "Kernel: debug\nMutant:")).unwrap();
        assert_eq!(d.kernel, Some(Profile::Debug));
        assert!(parse("x", Path::new("x"), &M.replace("Mutant:", "Kernel: kvm\nMutant:")).is_err());
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(parse("x", Path::new("x"), "Expect-fail: a:b.c\ndiff --git a/x b/x\n").is_err());
        assert!(parse("x", Path::new("x"), "Mutant: y\ndiff --git a/x b/x\n").is_err());
        assert!(parse("x", Path::new("x"), "Mutant: y\nExpect-fail: p2pmem_test\ndiff --git a/x b/x\n").is_err());
        assert!(parse("x", Path::new("x"), "Mutant: y\nExpect-fail: a:b.c\n").is_err());
    }

    #[test]
    fn judges_outcomes() {
        let tap = |s: &str| Some(format!("TAP version 13\n1..1\n{s} 1 p2pmem.a\n"));
        let runs = vec![("t@nvme".to_string(), tap("ok")), ("t@bar".to_string(), tap("not ok"))];
        assert_eq!(judge_test(&runs, "p2pmem.a", false), Outcome::Failed(vec!["t@bar".into()]));
        let runs = vec![("t@nvme".to_string(), tap("ok"))];
        assert_eq!(judge_test(&runs, "p2pmem.a", true), Outcome::Survived);
        let runs = vec![("t@nvme".to_string(), Some("TAP version 13\n1..2\n#  RUN           p2pmem.a ...\n".to_string()))];
        assert_eq!(judge_test(&runs, "p2pmem.a", true), Outcome::Crashed(vec!["t@nvme".into()]));
        assert_eq!(judge_test(&runs, "p2pmem.a", false), Outcome::NotRun);
        // A later test of the same program never started: not caught.
        assert_eq!(judge_test(&runs, "p2pmem.b", true), Outcome::NotRun);
        assert_eq!(judge_test(&[("t@nvme".to_string(), None)], "p2pmem.a", true), Outcome::NotRun);
        let runs = vec![("t@nvme".to_string(), Some("TAP version 13\n1..1\nok 1 p2pmem.a # SKIP no lone\n".to_string()))];
        assert_eq!(judge_test(&runs, "p2pmem.a", false), Outcome::Skipped);
        assert!(!Outcome::Survived.caught() && !Outcome::Skipped.caught() && !Outcome::NotRun.caught());
    }

    #[test]
    fn saved_outcomes_round_trip() {
        let dir = std::env::temp_dir().join(format!("p2pdma-mutants-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let j = vec![
            ("t".to_string(), "f.a".to_string(), Outcome::Failed(vec!["t@nvme".into(), "t@bar".into()])),
            ("t".to_string(), "f.b".to_string(), Outcome::Survived),
            ("t".to_string(), "f.c".to_string(), Outcome::NotRun),
        ];
        save(&dir.join("o.txt"), "tree1 blob1", &j).unwrap();
        let text = fs::read_to_string(dir.join("o.txt")).unwrap();
        assert_eq!(saved(&text), Some(("tree1 blob1", j)));
        assert_eq!(saved("tree1 blob1\n"), None);
        assert_eq!(saved("key tree1 blob1\nt f.a lost\n"), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn evidence_table() {
        let exp = vec![("t".to_string(), "f.a".to_string()), ("t".to_string(), "f.b".to_string()), ("t".to_string(), "f.c".to_string())];
        let known = vec![("t".to_string(), "f.b".to_string(), "no clearing".to_string())];
        let judged = vec![("m1".to_string(), "t".to_string(), "f.a".to_string(), Outcome::Failed(vec!["t@nvme".into()]))];
        let e = evidence(&exp, &known, &judged);
        assert!(e.contains("| t: f.a | mutant `m1` (not ok) |"));
        assert!(e.contains("| t: f.b | the C path (known failure: no clearing) |"));
        assert!(e.contains("| t: f.c | **not shown yet** |"));
        assert!(e.contains("2 of 3 tests shown to fail."));
    }
}
