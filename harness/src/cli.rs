// SPDX-License-Identifier: GPL-2.0
//! The command line (`./run <command> [options]`), parsed with clap.
//!
//! Each command takes only the options that apply to it; `Cli::opts()` turns the
//! parsed command into the [`Opts`] the commands read.

use crate::kernel::Profile;
use clap::{Args, Parser, Subcommand};

/// Rounds of each stress test in a default run: enough to catch a race, small
/// enough for CI under TCG. `--stress-iters N` selects the long run.
pub const DEFAULT_STRESS_ITERS: u32 = 3;

/// Stress rounds of a soak on the base kernel, and on the debug kernel.
pub const SOAK_ROUNDS: u32 = 200;
pub const SOAK_DEBUG_ROUNDS: u32 = 20;

/// Repetitions of each benchmark per boot when `--reps` is not given.
pub const DEFAULT_REPS: u32 = 5;

const ENVIRONMENT: &str = "\
Environment:
  P2PDMA_CACHE  where the kernel source, the O= build trees and the initramfs are kept
                (default: $HOME/.cache/p2pdma-rs); needs about 25 GB free for a first build
  P2PDMA_REPO   the p2pdma-rs repository whose patches/ are built
                (default: the repository the harness was built from)
  HOME          locates the default cache, and $HOME/.cargo/bin (rustup's toolchain,
                bindgen) is put first on PATH for kernel builds
  CI            when set, or when stdout is not a terminal, progress is printed as one
                line per update instead of a live bar

./run runs scripts/bootstrap first (as root: installs what is missing, a no-op the second
time), except for --help. Results go to results/<date>-<command>/ in the repository.";

/// Build Linux 7.3 with p2pdma-rs, boot it under QEMU with p2pmem providers (NVMe
/// CMBs, an ivshmem BAR), run and judge the tests, or benchmark the C and Rust paths.
#[derive(Debug, Parser)]
#[command(name = "run", bin_name = "./run", version, after_help = ENVIRONMENT)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Build the base kernel, boot it and show fio moving data through p2pmem.
    #[command(after_help = ENVIRONMENT)]
    Demo {
        /// Implementation serving p2pmem/allocate (boot parameter p2pdma.impl)
        /// [default: rust when the kernel has it, else c]
        #[arg(long = "impl", value_name = "IMPL", value_parser = ["c", "rust"])]
        imp: Option<String>,
        #[command(flatten)]
        boot: BootArgs,
    },
    /// Build the debug kernel, boot it once per implementation and run every test;
    /// exits non-zero on any failure.
    ///
    /// ./run test first checks the harness itself (cargo fmt --check, cargo clippy
    /// -D warnings, cargo test). Then: the debug kernel build (KASAN, lockdep, ...),
    /// one boot per implementation running the kselftests of
    /// tools/testing/selftests/p2pdma; the last boot also runs the KUnit suites,
    /// and ends, once its results are in, with a canary WARN that the splat check
    /// must catch.
    #[command(after_help = ENVIRONMENT)]
    Test {
        /// Implementations to boot, comma-separated [default: every one the kernel has]
        #[arg(long = "impl", value_name = "IMPL,...", value_delimiter = ',', value_parser = ["c", "rust"])]
        impls: Option<Vec<String>>,
        /// Skip the canary (a WARN through LKDTM at the end of the last boot, which the
        /// splat check must catch)
        #[arg(long)]
        no_canary: bool,
        /// Build the kernel's Rust code with CLIPPY=1
        #[arg(long)]
        clippy: bool,
        /// Rounds of each stress test per boot (a long run: --stress-iters 10000
        /// --timeout-min 100000)
        #[arg(long, value_name = "N", default_value_t = DEFAULT_STRESS_ITERS)]
        stress_iters: u32,
        #[command(flatten)]
        boot: BootArgs,
    },
    /// The long run: the stress tests for many rounds on the base kernel and on the
    /// debug kernel, then every test on the debug kernel with lazy RCU; writes
    /// soak.txt, whose figure `./run test` reports (`longrun=`).
    ///
    /// One boot per implementation and kernel runs p2pmem_stress_test on every
    /// provider with P2PDMA_STRESS_ITERS rounds; a last boot (the Rust
    /// implementation, `rcu_nocbs=all rcutree.enable_rcu_lazy=1`) runs every test
    /// with RCU callbacks batched lazily, as on a battery-powered machine, and the
    /// fail-nth sweep of p2pmem_fault_test on every provider (but for NVMe unbind and
    /// bind). Any failed
    /// case, splat, hang or leak fails the soak. Not part of `./run test`: it takes
    /// hours under TCG.
    #[command(after_help = ENVIRONMENT)]
    Soak {
        /// Stress rounds per test on the base kernel
        #[arg(long, value_name = "N", default_value_t = SOAK_ROUNDS, value_parser = clap::value_parser!(u32).range(1..))]
        rounds: u32,
        /// Stress rounds per test on the debug kernel
        #[arg(long, value_name = "N", default_value_t = SOAK_DEBUG_ROUNDS, value_parser = clap::value_parser!(u32).range(1..))]
        debug_rounds: u32,
        /// Implementations to soak, comma-separated [default: every one the kernel has]
        #[arg(long = "impl", value_name = "IMPL,...", value_delimiter = ',', value_parser = ["c", "rust"])]
        impls: Option<Vec<String>>,
        /// Skip the boot with lazy RCU
        #[arg(long, conflicts_with = "lazy_only")]
        no_lazy: bool,
        /// Only the boot with lazy RCU (results in results/<date>-soak-lazy; the
        /// latest full soak stays the `longrun=` figure)
        #[arg(long)]
        lazy_only: bool,
        #[command(flatten)]
        boot: BootArgs,
    },
    /// Show that the tests can fail: build a deliberately broken kernel per
    /// mutant (harness/mutants/*.patch) and check that the tests it names fail.
    ///
    /// Each mutant is a small diff against the series' tree that breaks one
    /// property (pages not cleared, no huge faults, no zap on unbind, ...) and names
    /// the tests that must then fail. One incremental build and one boot (the Rust
    /// implementation, only those tests, every provider) per mutant; a named test
    /// that passes fails the command. Writes mutants.txt and evidence.md (every test,
    /// and how it was shown to fail); the series' kernel is built again at the end.
    #[command(after_help = ENVIRONMENT)]
    Mutants {
        /// Mutants to run, comma-separated file names without .patch [default: all]
        #[arg(long, value_name = "NAME,...", value_delimiter = ',')]
        only: Option<Vec<String>>,
        /// Break this kernel for every mutant [default: the mutant's `Kernel:` line,
        /// else base: a one-file change relinks in about a minute and the tests run
        /// fastest; debug has fault injection, KASAN and lockdep]
        #[arg(long, value_enum)]
        profile: Option<Profile>,
        #[command(flatten)]
        boot: BootArgs,
    },
    /// C vs Rust benchmarks in one base kernel: p2pmem_bench, a fio matrix and perf
    /// profiles; writes bench.json, bench.md and bench.png.
    #[command(after_help = ENVIRONMENT)]
    Bench {
        /// Repetitions of each benchmark per boot
        #[arg(long, value_name = "N", default_value_t = DEFAULT_REPS, value_parser = clap::value_parser!(u32).range(1..))]
        reps: u32,
        /// Boots per implementation, alternating C and Rust; the values are pooled
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        rounds: u32,
        /// Run one benchmark figure and its profile only (4: fio alone)
        #[arg(long, value_name = "FIGURE")]
        only: Option<u32>,
        #[command(flatten)]
        boot: BootArgs,
    },
    /// Write the series to send upstream into a directory (git format-patch with a
    /// cover letter) and check it; exits non-zero on any failure.
    ///
    /// Every patch must apply with git am to pristine 7.3, pass checkpatch.pl --strict
    /// and build (the directories the series has touched so far, the test kernel's
    /// config, CLIPPY=1, any warning fatal); the whole series must pass rustfmtcheck
    /// and rustdoc without warnings. `edit` and `export` are how the series is
    /// changed: patches/ is its only copy.
    #[command(after_help = ENVIRONMENT)]
    Series {
        #[command(subcommand)]
        action: Option<SeriesAction>,
        /// Where to write the series [default: results/<date>-series/patches]
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// Skip the per-patch builds, rustfmtcheck and rustdoc (git am, checkpatch
        /// and the series only)
        #[arg(long)]
        no_build: bool,
    },
    /// Only build the kernel (fetch, prepare the tree, configure, make bzImage modules).
    #[command(after_help = ENVIRONMENT)]
    Build {
        /// Which kernel: base (demo, bench) or debug (test: KASAN, lockdep, ...)
        #[arg(long, value_enum, default_value_t = Profile::Debug)]
        profile: Profile,
        /// Build the kernel's Rust code with CLIPPY=1
        #[arg(long)]
        clippy: bool,
    },
}

/// What `./run series` does besides writing and checking the series.
#[derive(Debug, Clone, Subcommand)]
pub enum SeriesAction {
    /// Apply patches/ as commits on branch p2pdma-rs in a git worktree of the
    /// cache's tree ($P2PDMA_CACHE/series), to edit the series with git
    Edit {
        /// Rebuild an existing worktree from patches/ (drops what was not exported)
        #[arg(long)]
        reset: bool,
    },
    /// Write branch p2pdma-rs of that worktree back to patches/
    Export,
}

/// Options of every command that boots a guest.
#[derive(Debug, Args)]
pub struct BootArgs {
    /// Run the guest under KVM (needs a working /dev/kvm); the default is TCG,
    /// which works anywhere
    #[arg(long)]
    pub kvm: bool,
    /// Kill a guest that has not finished after N minutes [default: per command,
    /// from the work it does]
    #[arg(long, value_name = "N")]
    pub timeout_min: Option<u64>,
    /// Extra kernel command-line arguments for every boot
    #[arg(long, value_name = "'KERNEL ARGS'", allow_hyphen_values = true, default_value = "", hide_default_value = true)]
    pub append: String,
}

/// Options the commands read.
#[derive(Debug, Default)]
pub struct Opts {
    pub impls: Option<Vec<String>>,
    pub kvm: bool,
    pub canary: bool,
    pub profile: Option<Profile>,
    pub clippy: bool,
    pub timeout_min: Option<u64>,
    pub extra_cmdline: String,
    pub stress_iters: Option<u32>,
    pub reps: Option<u32>,
    pub only: Option<u32>,
    pub rounds: Option<u32>,
    pub debug_rounds: Option<u32>,
    pub lazy: bool,
    pub lazy_only: bool,
    pub series: Option<SeriesAction>,
    pub out: Option<std::path::PathBuf>,
    pub mutants: Option<Vec<String>>,
}

impl Opts {
    fn boot(b: BootArgs) -> Self {
        Opts { kvm: b.kvm, timeout_min: b.timeout_min, extra_cmdline: b.append, canary: true, ..Default::default() }
    }
}

impl Cmd {
    /// The command's name and its options.
    pub fn opts(self) -> (&'static str, Opts) {
        match self {
            Cmd::Demo { imp, boot } => ("demo", Opts { impls: imp.map(|i| vec![i]), ..Opts::boot(boot) }),
            Cmd::Test { impls, no_canary, clippy, stress_iters, boot } => {
                ("test", Opts { impls, canary: !no_canary, clippy, stress_iters: Some(stress_iters), ..Opts::boot(boot) })
            }
            Cmd::Soak { rounds, debug_rounds, impls, no_lazy, lazy_only, boot } => (
                "soak",
                Opts { impls, stress_iters: Some(rounds), debug_rounds: Some(debug_rounds), lazy: !no_lazy, lazy_only, ..Opts::boot(boot) },
            ),
            Cmd::Mutants { only, profile, boot } => ("mutants", Opts { mutants: only, profile, ..Opts::boot(boot) }),
            Cmd::Bench { reps, rounds, only, boot } => ("bench", Opts { reps: Some(reps), rounds: Some(rounds), only, ..Opts::boot(boot) }),
            Cmd::Build { profile, clippy } => ("build", Opts { profile: Some(profile), clippy, ..Default::default() }),
            Cmd::Series { action, out, no_build } => ("series", Opts { series: action, out, clippy: !no_build, ..Default::default() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<(&'static str, Opts), clap::Error> {
        Cli::try_parse_from(std::iter::once("run").chain(args.iter().copied())).map(|c| c.cmd.opts())
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn test_options() {
        let (cmd, o) = parse(&["test", "--impl", "c,rust", "--no-canary", "--kvm", "--append", "quiet loglevel=7"]).unwrap();
        assert_eq!(cmd, "test");
        assert_eq!(o.impls.unwrap(), ["c", "rust"]);
        assert!(!o.canary && o.kvm);
        assert_eq!(o.extra_cmdline, "quiet loglevel=7");
        assert_eq!(o.stress_iters, Some(DEFAULT_STRESS_ITERS));
        let (_, o) = parse(&["test"]).unwrap();
        assert!(o.canary && o.impls.is_none() && !o.kvm && o.timeout_min.is_none());
        assert_eq!(o.extra_cmdline, "");
        let (_, o) = parse(&["test", "--stress-iters", "10000", "--timeout-min", "100000", "--impl", "rust"]).unwrap();
        assert_eq!((o.stress_iters, o.timeout_min), (Some(10000), Some(100000)));
        assert_eq!(o.impls.unwrap(), ["rust"]);
    }

    #[test]
    fn per_command_options() {
        let (cmd, o) = parse(&["build", "--profile", "base", "--clippy"]).unwrap();
        assert_eq!((cmd, o.profile, o.clippy), ("build", Some(Profile::Base), true));
        assert_eq!(parse(&["build"]).unwrap().1.profile, Some(Profile::Debug));
        let (_, o) = parse(&["bench", "--reps", "3", "--rounds", "2", "--only", "4"]).unwrap();
        assert_eq!((o.reps, o.rounds, o.only), (Some(3), Some(2), Some(4)));
        let (_, o) = parse(&["bench"]).unwrap();
        assert_eq!((o.reps, o.rounds, o.only), (Some(DEFAULT_REPS), Some(1), None));
        let (_, o) = parse(&["demo", "--impl", "c"]).unwrap();
        assert_eq!(o.impls.unwrap(), ["c"]);
        // Options of one command are refused by the others.
        assert_eq!(parse(&["demo", "--reps", "3"]).unwrap_err().kind(), ErrorKind::UnknownArgument);
        assert_eq!(parse(&["build", "--kvm"]).unwrap_err().kind(), ErrorKind::UnknownArgument);
        assert_eq!(parse(&["bench", "--rounds", "0"]).unwrap_err().kind(), ErrorKind::ValueValidation);
        let (cmd, o) = parse(&["series", "--out", "/tmp/s"]).unwrap();
        assert_eq!((cmd, o.out.unwrap().to_str(), o.clippy, o.series.is_none()), ("series", Some("/tmp/s"), true, true));
        assert!(!parse(&["series", "--no-build"]).unwrap().1.clippy);
        assert!(matches!(parse(&["series", "edit", "--reset"]).unwrap().1.series, Some(SeriesAction::Edit { reset: true })));
        assert!(matches!(parse(&["series", "export"]).unwrap().1.series, Some(SeriesAction::Export)));
        let (cmd, o) = parse(&["soak", "--rounds", "5", "--debug-rounds", "2", "--impl", "rust", "--no-lazy"]).unwrap();
        assert_eq!((cmd, o.stress_iters, o.debug_rounds, o.lazy), ("soak", Some(5), Some(2), false));
        let (_, o) = parse(&["soak"]).unwrap();
        assert_eq!((o.stress_iters, o.debug_rounds, o.lazy), (Some(SOAK_ROUNDS), Some(SOAK_DEBUG_ROUNDS), true));
    }

    #[test]
    fn errors() {
        let e = parse(&["test", "--stress-iter", "3"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownArgument);
        assert!(e.to_string().contains("--stress-iters"), "no suggestion in: {e}");
        assert_eq!(parse(&["test", "--impl", "go"]).unwrap_err().kind(), ErrorKind::InvalidValue);
        assert_eq!(parse(&["test", "--timeout-min", "x"]).unwrap_err().kind(), ErrorKind::ValueValidation);
        assert_eq!(parse(&["tset"]).unwrap_err().kind(), ErrorKind::InvalidSubcommand);
        assert_eq!(parse(&[]).unwrap_err().kind(), ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand);
    }

    #[test]
    fn help_documents_flags_and_environment() {
        for (cmd, flags) in [
            ("test", &["--impl", "--kvm", "--no-canary", "--clippy", "--timeout-min", "--stress-iters", "--append"][..]),
            ("demo", &["--impl", "--kvm", "--timeout-min", "--append"][..]),
            ("bench", &["--reps", "--rounds", "--only", "--kvm", "--timeout-min", "--append"][..]),
            ("build", &["--profile", "--clippy"][..]),
            ("series", &["--out", "--no-build", "edit", "export"][..]),
            ("soak", &["--rounds", "--debug-rounds", "--impl", "--no-lazy", "--lazy-only", "--kvm", "--timeout-min", "--append"][..]),
            ("mutants", &["--only", "--profile", "--kvm", "--timeout-min", "--append"][..]),
        ] {
            let help = Cli::command().find_subcommand_mut(cmd).unwrap().render_long_help().to_string();
            for f in flags {
                assert!(help.contains(f), "{cmd} --help lacks {f}");
            }
            for v in ["P2PDMA_CACHE", "P2PDMA_REPO", "HOME", "CI"] {
                assert!(help.contains(v), "{cmd} --help lacks {v}");
            }
        }
    }
}
