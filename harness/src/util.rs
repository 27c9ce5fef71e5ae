// SPDX-License-Identifier: GPL-2.0
//! Small process helpers, and progress with an end.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Prints a progress line for a harness step.
pub fn step(step: &str, msg: &str) {
    println!("[{step:>7}] {msg}");
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// The Debian package (or other source) of a program the harness runs.
fn package_of(prog: &str) -> &'static str {
    match prog {
        "cc" | "gcc" => "gcc",
        "make" => "make",
        "git" => "git",
        "flex" => "flex",
        "bison" => "bison",
        "bc" => "bc",
        "perl" => "perl",
        "cpio" => "cpio",
        "xz" => "xz-utils",
        "tar" | "sh" | "date" | "df" => "coreutils/tar",
        "dpkg-deb" => "dpkg",
        "apt-get" => "apt",
        "fio" => "fio",
        "busybox" => "busybox-static",
        "python3" | "/usr/bin/python3" => "python3-matplotlib",
        "qemu-system-x86_64" => "qemu-system-x86 from bookworm-backports",
        "bindgen" => "bindgen-cli from crates.io",
        "rustc" | "cargo" | "rustup" => "rustup",
        p if p.starts_with("clang") => "clang-19",
        p if p.starts_with("ld.lld") => "lld-19",
        p if p.starts_with("llvm-") => "llvm-19",
        _ => "a package scripts/bootstrap installs",
    }
}

/// The one-line error for a program that is not installed.
pub fn missing_tool(prog: &str) -> String {
    format!("{prog} not found: run scripts/bootstrap as root (installs {})", package_of(prog))
}

/// The error for a command that could not be started.
fn spawn_error(cmd: &Command, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(missing_tool(&cmd.get_program().to_string_lossy()))
    } else {
        anyhow::Error::new(e).context(format!("spawning {}", describe(cmd)))
    }
}

/// `PATH` as the harness runs tools: `$HOME/.cargo/bin` (rustup, bindgen) first.
pub fn tool_path() -> std::ffi::OsString {
    let mut parts = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        parts.push(std::path::Path::new(&home).join(".cargo/bin"));
    }
    parts.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(parts).expect("PATH")
}

/// Fails with one line per missing program (the first one's as the error).
pub fn require_tools(progs: &[&str]) -> Result<()> {
    let path = tool_path();
    let missing: Vec<&str> = progs
        .iter()
        .copied()
        .filter(|p| !std::env::split_paths(&path).any(|d| d.join(p).is_file()) && !std::path::Path::new(p).is_file())
        .collect();
    match missing.as_slice() {
        [] => Ok(()),
        [one] => bail!(missing_tool(one)),
        many => bail!("{} (and {} more: {})", missing_tool(many[0]), many.len() - 1, many[1..].join(", ")),
    }
}

/// Free bytes for an unprivileged user in the file system of `dir`, from the
/// POSIX output of `df -Pk`.
pub fn free_bytes(dir: &std::path::Path) -> Result<u64> {
    let out = run_capture(Command::new("df").arg("-Pk").arg(dir))?;
    parse_df(&out).with_context(|| format!("unexpected df output: {out}"))
}

fn parse_df(out: &str) -> Option<u64> {
    // "Filesystem 1024-blocks Used Available Capacity Mounted on", then one line.
    let kib: u64 = out.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()?;
    Some(kib * 1024)
}

/// Fails with what to do when `dir` has less than `need` bytes free for `what`.
pub fn require_space(dir: &std::path::Path, need: u64, what: &str) -> Result<()> {
    let free = free_bytes(dir)?;
    if free < need {
        bail!(
            "disk full: {what} needs about {} free in {}, there are {}: free some space, or set P2PDMA_CACHE to a disk with room",
            gib(need),
            dir.display(),
            gib(free)
        );
    }
    Ok(())
}

/// `12.3 GB` (10^9 bytes, as df -H).
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

/// Runs `cmd`, inheriting stdout/stderr; fails on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().map_err(|e| spawn_error(cmd, e))?;
    if !st.success() {
        bail!("{} failed ({st})", describe(cmd));
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; on failure the error carries its stderr.
pub fn run_capture(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| spawn_error(cmd, e))?;
    if !out.status.success() {
        bail!("{} failed ({}): {}", describe(cmd), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with `input` on stdin and returns its stdout.
pub fn run_with_input(mut cmd: Command, input: &str) -> Result<String> {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| spawn_error(&cmd, e))?;
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(data.as_bytes()));
    let out = child.wait_with_output()?;
    writer.join().expect("stdin writer")?;
    if !out.status.success() {
        bail!("{} failed ({}): {}", describe(&cmd), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether progress is drawn as a live bar: stdout is a terminal and `CI` is not set.
pub fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("CI").is_none()
}

/// Time left at a constant rate, from `done` of `total` after `elapsed`; `None`
/// before the first unit or when the estimate of the total has been passed.
pub fn eta(elapsed: Duration, done: u64, total: u64) -> Option<Duration> {
    if done == 0 || done >= total {
        return None;
    }
    Some(elapsed.mul_f64((total - done) as f64 / done as f64))
}

/// `1h02m`, `4m05s`, `12s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// Progress of a long step with a known (or estimated) end.
///
/// On a terminal, a live bar (indicatif). Otherwise (CI, a log file) one plain
/// line per update, at most one every `interval`, so logs stay readable.
pub struct Progress {
    step: &'static str,
    unit: &'static str,
    total: Option<u64>,
    done: u64,
    msg: String,
    start: Instant,
    last_line: Option<Instant>,
    interval: Duration,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// `total` is what the step will count to (`None`: unknown, no ETA); `unit`
    /// names what is counted ("steps", "tests").
    pub fn new(step: &'static str, unit: &'static str, total: Option<u64>) -> Self {
        Self::with_mode(step, unit, total, interactive())
    }

    fn with_mode(step: &'static str, unit: &'static str, total: Option<u64>, live: bool) -> Self {
        let bar = live.then(|| {
            let (bar, template) = match total {
                Some(t) => (ProgressBar::new(t), format!("[{{prefix:>7}}] {{bar:30}} {{pos}}/{{len}} {unit}, {{wide_msg}}")),
                None => (ProgressBar::new_spinner(), format!("[{{prefix:>7}}] {{spinner}} {{pos}} {unit}, {{wide_msg}}")),
            };
            // Drawn on stdout, where the rest of the harness's progress goes.
            bar.set_draw_target(ProgressDrawTarget::stdout());
            bar.set_style(ProgressStyle::with_template(&template).expect("progress template").progress_chars("=> "));
            bar.set_prefix(step);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            step,
            unit,
            total,
            done: 0,
            msg: String::new(),
            start: Instant::now(),
            last_line: None,
            interval: Duration::from_secs(20),
            bar,
        }
    }

    /// Sets how many units are done and what is happening now.
    pub fn set(&mut self, done: u64, msg: &str) {
        self.done = done;
        msg.clone_into(&mut self.msg);
        if let Some(bar) = &self.bar {
            if let Some(t) = self.total {
                // An estimated total can be passed: grow it rather than overflow.
                bar.set_length(t.max(done));
            }
            bar.set_position(done);
            bar.set_message(self.status(false));
        } else if self.last_line.is_none_or(|t| t.elapsed() >= self.interval) {
            self.last_line = Some(Instant::now());
            step(self.step, &self.status(true));
        }
    }

    /// One more unit done.
    pub fn inc(&mut self, msg: &str) {
        self.set(self.done + 1, msg)
    }

    /// The status text: `1234/9000 steps (13%), 2m10s, ETA 14m05s, <msg>`
    /// (`with_count`: the count is not drawn by a bar).
    pub fn status(&self, with_count: bool) -> String {
        let elapsed = self.start.elapsed();
        let mut s = String::new();
        if with_count {
            s.push_str(&match self.total {
                Some(t) if t > 0 => format!("{}/{} {} ({}%), ", self.done, t, self.unit, (self.done * 100 / t).min(100)),
                _ => format!("{} {}, ", self.done, self.unit),
            });
        }
        s.push_str(&human(elapsed));
        match self.total.map(|t| (t, eta(elapsed, self.done, t))) {
            Some((_, Some(left))) => s.push_str(&format!(", ETA {}", human(left))),
            Some((t, None)) if self.done >= t => s.push_str(", almost done"),
            _ => {}
        }
        if !self.msg.is_empty() {
            s.push_str(", ");
            s.push_str(&self.msg);
        }
        s
    }

    /// Prints a line above the bar (or just a line without one).
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }

    /// Units done so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Time since the step started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Removes the bar; the caller prints the result line.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The directories `results/<date>-<kind>` under `results` (not the `latest-*` links),
/// oldest first; none if `results` does not exist.
pub fn result_dirs(results: &std::path::Path, kind: &str) -> Vec<std::path::PathBuf> {
    let suffix = format!("-{kind}");
    let mut dirs: Vec<_> = std::fs::read_dir(results).map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    dirs.retain(|d: &std::path::PathBuf| d.file_name().is_some_and(|n| n.to_string_lossy().ends_with(&suffix)) && !d.is_symlink());
    dirs.sort();
    dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tools() {
        assert_eq!(missing_tool("clang-19"), "clang-19 not found: run scripts/bootstrap as root (installs clang-19)");
        assert!(missing_tool("qemu-system-x86_64").contains("bookworm-backports"));
        assert!(require_tools(&["sh"]).is_ok());
        let e = require_tools(&["sh", "no-such-tool-p2pdma", "nor-this-one"]).unwrap_err().to_string();
        assert!(e.starts_with("no-such-tool-p2pdma not found: run scripts/bootstrap"), "{e}");
        assert!(e.ends_with("(and 1 more: nor-this-one)"), "{e}");
        let e = run(&mut Command::new("no-such-tool-p2pdma")).unwrap_err().to_string();
        assert!(e.starts_with("no-such-tool-p2pdma not found"), "{e}");
    }

    #[test]
    fn disk_space() {
        let df =
            "Filesystem     1024-blocks     Used Available Capacity Mounted on\n/dev/vda         264212084 17411024  77874864      19% /\n";
        assert_eq!(parse_df(df), Some(77874864 * 1024));
        assert_eq!(parse_df("garbage"), None);
        assert!(free_bytes(std::path::Path::new("/")).unwrap() > 0);
        let e = require_space(std::path::Path::new("/"), u64::MAX, "a test").unwrap_err().to_string();
        assert!(e.starts_with("disk full: a test needs about"), "{e}");
        assert!(e.contains("P2PDMA_CACHE"), "{e}");
        assert!(require_space(std::path::Path::new("/"), 0, "a test").is_ok());
    }

    #[test]
    fn eta_at_constant_rate() {
        assert_eq!(eta(Duration::from_secs(60), 100, 400), Some(Duration::from_secs(180)));
        assert_eq!(eta(Duration::from_secs(60), 0, 400), None);
        assert_eq!(eta(Duration::from_secs(60), 400, 400), None);
        assert_eq!(eta(Duration::from_secs(60), 500, 400), None);
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(12)), "12s");
        assert_eq!(human(Duration::from_secs(245)), "4m05s");
        assert_eq!(human(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn live_bars() {
        for total in [Some(10), None] {
            let mut p = Progress::with_mode("build", "steps", total, true);
            p.inc("CC a.o");
            p.set(12, "LD vmlinux");
            p.println("a line above the bar");
            assert_eq!(p.done(), 12);
            p.finish();
        }
    }

    #[test]
    fn plain_status_lines() {
        let mut p = Progress::with_mode("build", "steps", Some(1000), false);
        p.done = 250;
        p.msg = "CC mm/gup.o".into();
        let s = p.status(true);
        assert!(s.starts_with("250/1000 steps (25%), 0s"), "{s}");
        assert!(s.ends_with(", CC mm/gup.o"), "{s}");
        p.done = 1200;
        assert!(p.status(true).starts_with("1200/1000 steps (100%)"), "{}", p.status(true));
        assert!(p.status(true).contains("almost done"));
        let mut p = Progress::with_mode("build", "steps", None, false);
        p.done = 7;
        assert!(p.status(true).starts_with("7 steps, 0s"), "{}", p.status(true));
        assert!(!p.status(true).contains("ETA"));
    }
}
