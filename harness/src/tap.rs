// SPDX-License-Identifier: GPL-2.0
//! TAP 13 / KTAP results, as printed by `kselftest_harness.h` and by KUnit.
//!
//! Nested KTAP (KUnit) prints a suite's cases indented by four spaces *before* the
//! suite's own result line; a case is named `suite.case` once that line arrives.
//! Kernel log prefixes (`[    1.234567] `) are stripped so the parser can read the
//! guest console directly.

/// Outcome of one test point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Skip(String),
}

/// One test point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPoint {
    /// Test name; nested points are prefixed with their parent's name and a dot.
    pub name: String,
    pub status: Status,
    /// Nesting depth (0 for top level).
    pub depth: usize,
}

/// A parsed TAP stream.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Declared plan of the top level (`1..N`), if any.
    pub plan: Option<usize>,
    /// Top-level points and, for nested streams, every nested point.
    pub points: Vec<TestPoint>,
    /// `Bail out!` reason, if the stream bailed out.
    pub bail_out: Option<String>,
    /// Diagnostic lines (`# ...`) at the top level.
    pub diagnostics: Vec<String>,
}

impl Report {
    /// Top-level points (suites for KUnit, tests for kselftest).
    pub fn top(&self) -> impl Iterator<Item = &TestPoint> {
        self.points.iter().filter(|p| p.depth == 0)
    }

    /// Leaf points: nested cases, or top-level points without children.
    pub fn leaves(&self) -> Vec<&TestPoint> {
        self.points
            .iter()
            .filter(|p| {
                let prefix = format!("{}.", p.name);
                !self.points.iter().any(|c| c.depth == p.depth + 1 && c.name.starts_with(&prefix))
            })
            .collect()
    }
}

/// Strips a kernel log timestamp prefix (`[   12.345678] `), if present.
pub fn strip_kernel_prefix(line: &str) -> &str {
    let l = line.trim_end_matches('\r');
    if let Some(rest) = l.strip_prefix('[') {
        if let Some(end) = rest.find("] ") {
            let ts = rest[..end].trim();
            if !ts.is_empty() && ts.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return &rest[end + 2..];
            }
        }
    }
    l
}

fn parse_result(body: &str) -> Option<(bool, String, Option<String>)> {
    let (ok, rest) = if let Some(r) = body.strip_prefix("not ok ") {
        (false, r)
    } else if let Some(r) = body.strip_prefix("ok ") {
        (true, r)
    } else {
        return None;
    };
    // "<num> [- ]<description>[ # DIRECTIVE reason]"
    let rest = rest.trim_start();
    let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut desc = rest[digits..].trim_start();
    desc = desc.strip_prefix("- ").unwrap_or(desc);
    let (name, directive) = match desc.find(" # ") {
        Some(i) => (desc[..i].trim(), Some(desc[i + 3..].trim().to_string())),
        None => match desc.strip_prefix("# ") {
            Some(d) => ("", Some(d.trim().to_string())),
            None => (desc.trim(), None),
        },
    };
    Some((ok, name.to_string(), directive))
}

/// Parses TAP/KTAP text. Lines that are not TAP (kernel messages, program output)
/// are ignored.
pub fn parse(text: &str) -> Report {
    let mut rep = Report::default();
    // Pending children per depth, named when their parent's result arrives.
    let mut pending: Vec<Vec<TestPoint>> = Vec::new();
    for raw in text.lines() {
        let line = strip_kernel_prefix(raw);
        let indent = line.len() - line.trim_start_matches(' ').len();
        let body = line.trim();
        let depth = indent / 4;
        if let Some(reason) = body.strip_prefix("Bail out!") {
            rep.bail_out = Some(reason.trim().to_string());
            continue;
        }
        if depth == 0 {
            if let Some(n) = body.strip_prefix("1..") {
                if let Ok(n) = n.split_whitespace().next().unwrap_or("").parse() {
                    rep.plan = Some(n);
                }
                continue;
            }
            if let Some(d) = body.strip_prefix('#') {
                rep.diagnostics.push(d.trim().to_string());
                continue;
            }
        }
        let Some((ok, name, directive)) = parse_result(body) else {
            continue;
        };
        let status = match directive {
            Some(d) if d.to_ascii_uppercase().starts_with("SKIP") => Status::Skip(d[4..].trim().to_string()),
            _ if ok => Status::Pass,
            _ => Status::Fail,
        };
        while pending.len() <= depth + 1 {
            pending.push(Vec::new());
        }
        let children = std::mem::take(&mut pending[depth + 1]);
        for mut c in children {
            c.name = format!("{name}.{}", c.name);
            pending[depth].push(c);
        }
        pending[depth].push(TestPoint { name, status, depth });
        if depth == 0 {
            rep.points.append(&mut pending[0]);
        }
    }
    // Children whose parent never reported (a crash mid-suite) are kept as they are.
    for level in pending.into_iter().skip(1) {
        rep.points.extend(level);
    }
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    const KSELFTEST: &str = "TAP version 13
1..4
# Starting 4 tests from 2 test cases.
#  RUN           p2pmem.mmap_rw ...
#            OK  p2pmem.mmap_rw
ok 1 p2pmem.mmap_rw
#  RUN           p2pmem.private ...
# p2pdma_test.c:10:private:Expected errno (22) == EINVAL (1)
#          FAIL  p2pmem.private
not ok 2 p2pmem.private
ok 3 p2pmem.lone # SKIP no third NVMe
ok 4 - odirect.same_dev
# FAILED: 2 / 4 tests passed.
# Totals: pass:2 fail:1 xfail:0 xpass:0 skip:1 error:0
";

    #[test]
    fn kselftest_harness_output() {
        let r = parse(KSELFTEST);
        assert_eq!(r.plan, Some(4));
        let names: Vec<_> = r.top().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["p2pmem.mmap_rw", "p2pmem.private", "p2pmem.lone", "odirect.same_dev"]);
        assert_eq!(r.points[0].status, Status::Pass);
        assert_eq!(r.points[1].status, Status::Fail);
        assert_eq!(r.points[2].status, Status::Skip("no third NVMe".into()));
        assert_eq!(r.points[3].status, Status::Pass);
        assert!(r.bail_out.is_none());
    }

    #[test]
    fn ktap_from_kernel_log() {
        let log = "[    1.000000] Run /init as init process
[    2.100000] KTAP version 1
[    2.100001] 1..1
[    2.100002]     KTAP version 1
[    2.100003]     # Subtest: rust_genalloc
[    2.100004]     # speed: normal
[    2.100005]     1..2
[    2.200000]     ok 1 alloc_free
[    2.300000]     not ok 2 owner
[    2.300001] # rust_genalloc: pass:1 fail:1 skip:0 total:2
[    2.300002] not ok 1 rust_genalloc
";
        let r = parse(log);
        assert_eq!(r.plan, Some(1));
        let leaves: Vec<_> = r.leaves().iter().map(|p| (p.name.clone(), p.status.clone())).collect();
        assert_eq!(leaves, [("rust_genalloc.alloc_free".to_string(), Status::Pass), ("rust_genalloc.owner".to_string(), Status::Fail)]);
        assert_eq!(r.top().count(), 1);
    }

    #[test]
    fn bail_out_and_noise() {
        let r = parse("hello\nok not-a-number\nBail out! no device\n");
        assert_eq!(r.bail_out.as_deref(), Some("no device"));
        assert!(r.points.is_empty());
    }

    #[test]
    fn kernel_prefix() {
        assert_eq!(strip_kernel_prefix("[   12.345678] ok 1 x"), "ok 1 x");
        assert_eq!(strip_kernel_prefix("[x] ok"), "[x] ok");
        assert_eq!(strip_kernel_prefix("ok 1 y\r"), "ok 1 y");
    }
}
