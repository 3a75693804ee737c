//! `cargo xtask`: one command per thing a developer or CI does with monitor. Every command first
//! runs the bootstrap, which installs what a fresh machine lacks and does nothing (in one line)
//! when all is there.

mod apt;
mod bench;
mod bootstrap;
mod cmd;
mod ebpf;
mod fuzz;
mod reference;
mod step;

use std::{
    ffi::OsString,
    os::unix::process::CommandExt as _,
    process::{Command, ExitCode, ExitStatus},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

use crate::bootstrap::{EBPF_TOOLCHAIN, Needs};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run, test and benchmark monitor")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what builds, checks and tests need (rustup components, bpf-linker, tracefs, apt).
    Bootstrap,
    /// Build only the eBPF object (monitor-ebpf) and print its path on stdout.
    BuildEbpf,
    /// Build the daemon (release) and run it as root: `cargo xtask run -- --events`.
    Run {
        /// Arguments for the daemon (see `cargo xtask run -- --help`).
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Format and clippy checks, a short fuzz run, unit tests, then the privileged end-to-end
    /// tests (one at a time).
    Test {
        /// Arguments for the test binaries, e.g. a test name filter.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// What the monitor costs against no monitor, the kernel floor and a bpftrace peer (root);
    /// writes docs/benchmarks.md.
    Bench(bench::Options),
}

fn main() -> ExitCode {
    match Cli::parse().command.run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

impl Cmd {
    fn run(self) -> Result<ExitCode> {
        match self {
            Self::Bootstrap => {
                bootstrap::run(&Needs {
                    packages: apt::TEST_PACKAGES,
                    community_id_reference: true,
                    root_required: false,
                    tracefs: true,
                    cargo_deb: true,
                    cargo_fuzz: true,
                })?;
            }
            Self::BuildEbpf => {
                // A build only: no tracefs (a container build cannot mount it), no cargo-deb.
                bootstrap::run(&Needs {
                    packages: &[],
                    community_id_reference: false,
                    root_required: false,
                    tracefs: false,
                    cargo_deb: false,
                    cargo_fuzz: false,
                })?;
                let object = ebpf::build()?;
                println!("{}", object.display());
            }
            Self::Run { args } => run(&args)?,
            Self::Test { args } => return test(&args),
            Self::Bench(options) => bench::run(&options)?,
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Builds the release daemon and replaces this process with it (through `sudo -E` when not root),
/// so Ctrl-C and SIGTERM reach the daemon directly.
fn run(args: &[OsString]) -> Result<()> {
    bootstrap::run(&Needs {
        packages: &[],
        community_id_reference: false,
        root_required: true,
        tracefs: true,
        cargo_deb: false,
        cargo_fuzz: false,
    })?;
    cmd::run(cmd::cargo().args(["build", "--release", "--package", "monitor"]))?;
    let monitor = cmd::target_dir().join("release").join("monitor");
    let mut daemon = if cmd::is_root() {
        Command::new(&monitor)
    } else if cmd::which("sudo").is_some() {
        let mut sudo = Command::new("sudo");
        sudo.arg("-E").arg(&monitor);
        sudo
    } else {
        bail!(
            "the monitor loads eBPF programs and needs root: run `cargo xtask run` as root (no sudo here)"
        );
    };
    daemon.args(args);
    eprintln!("xtask: $ {}", cmd::display(&daemon));
    let err = daemon.exec();
    Err(err).with_context(|| format!("cannot exec {}", monitor.display()))
}

/// One stage of `cargo xtask test` and how it ended.
struct Stage {
    name: &'static str,
    outcome: String,
    ok: bool,
}

impl Stage {
    /// Records how the stage `name` ended; returns whether it succeeded.
    fn record(stages: &mut Vec<Self>, name: &'static str, status: ExitStatus) -> bool {
        let ok = status.success();
        let outcome = if ok {
            "ok".to_string()
        } else {
            format!("FAILED ({status})")
        };
        stages.push(Self { name, outcome, ok });
        ok
    }
}

/// The format and lint checks, run before the tests (ahead of their long output).
fn checks() -> [(&'static str, Command); 3] {
    // Nightly rustfmt: rustfmt.toml's `group_imports` and `imports_granularity` are nightly-only.
    let mut fmt = cmd::cargo();
    fmt.args([&format!("+{EBPF_TOOLCHAIN}"), "fmt", "--all", "--check"]);
    let mut clippy = cmd::cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--exclude",
        "monitor-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    [
        ("format (nightly rustfmt)", fmt),
        ("clippy (userspace)", clippy),
        ("clippy (eBPF)", ebpf::clippy()),
    ]
}

/// Runs every stage even after a failure (a CI log then shows all of them), prints a summary, and
/// fails when any stage failed.
fn test(args: &[OsString]) -> Result<ExitCode> {
    bootstrap::run(&Needs {
        packages: apt::TEST_PACKAGES,
        community_id_reference: true,
        root_required: false,
        tracefs: true,
        cargo_deb: true,
        cargo_fuzz: true,
    })?;
    let mut stages = Vec::new();
    for (name, mut check) in checks() {
        Stage::record(&mut stages, name, cmd::status(&mut check)?);
    }
    // No root and no kernel needed: before the lock, so other checkouts use the kernel meanwhile.
    stages.push(fuzz_stage(args));
    // Some unit tests load eBPF too; from here on, one checkout at a time on this machine.
    let _lock = cmd::KernelLock::acquire("the tests")?;
    Stage::record(
        &mut stages,
        "unit tests (workspace, no root)",
        cmd::status(
            cmd::cargo()
                // The interpreter the bootstrap installed the reference into: the Community ID
                // test fails, rather than skips, when it does not work.
                .env(reference::ENV, reference::python())
                .args([
                    "test",
                    // Run every test binary even after one fails: CI then reports all failures.
                    "--no-fail-fast",
                    "--workspace",
                    "--exclude",
                    "monitor-ebpf",
                    "--exclude",
                    "monitor-tests",
                    // Built and run by the fuzz stage (cargo-fuzz, nightly); nothing to test here.
                    "--exclude",
                    "monitor-fuzz",
                    "--",
                ])
                .args(args),
        )?,
    );
    // The end-to-end tests run the same debug build the unit tests just compiled: no second profile.
    let built = Stage::record(
        &mut stages,
        "build monitor (debug)",
        cmd::status(cmd::cargo().args(["build", "--package", "monitor"]))?,
    );
    if built {
        let monitor = cmd::target_dir().join("debug").join("monitor");
        match std::env::var_os(tests_env::REQUIRE) {
            Some(value) => eprintln!(
                "xtask: {}={} is passed on to the privileged tests",
                tests_env::REQUIRE,
                value.to_string_lossy()
            ),
            None if !cmd::is_root() => eprintln!(
                "xtask: not root: the privileged end-to-end tests will SKIP (run `sudo -E cargo xtask test` to run them)"
            ),
            None => {}
        }
        Stage::record(
            &mut stages,
            "privileged end-to-end tests",
            cmd::status(
                cmd::cargo()
                    .env(tests_env::MONITOR_BIN, &monitor)
                    .args([
                        "test",
                        "--no-fail-fast",
                        "--package",
                        "monitor-tests",
                        "--",
                        "--test-threads=1",
                    ])
                    .args(args),
            )?,
        );
    } else {
        stages.push(Stage {
            name: "privileged end-to-end tests",
            outcome: "not run (build failed)".into(),
            ok: false,
        });
    }

    stages.push(bench_smoke(args));

    eprintln!("\nxtask test summary:");
    for Stage { name, outcome, .. } in &stages {
        eprintln!("  {name:<34} {outcome}");
    }
    if stages.iter().all(|s| s.ok) {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xtask test: FAILED (scroll up for each stage's own test summary)");
        Ok(ExitCode::FAILURE)
    }
}

/// The fuzz targets, a few seconds each (`fuzz.rs`); left out when a test filter was given.
fn fuzz_stage(args: &[OsString]) -> Stage {
    const NAME: &str = "fuzz targets (seconds each)";
    if !args.is_empty() {
        return Stage {
            name: NAME,
            outcome: "not run (a test filter was given)".into(),
            ok: true,
        };
    }
    let (outcome, ok) = match fuzz::run() {
        Ok(failed) if failed.is_empty() => ("ok".to_owned(), true),
        Ok(failed) => (format!("FAILED ({})", failed.join(", ")), false),
        Err(e) => {
            eprintln!("xtask: fuzz stage failed: {e:#}");
            (format!("FAILED ({e})"), false)
        }
    };
    Stage {
        name: NAME,
        outcome,
        ok,
    }
}

/// `cargo xtask bench --smoke`: every measurement of the benchmark with tiny sizes, so that its
/// harness cannot rot (the figures are not looked at). Needs root like the privileged tests, and
/// is left out when a test filter was given.
fn bench_smoke(args: &[OsString]) -> Stage {
    const NAME: &str = "benchmark smoke run";
    if !args.is_empty() {
        return Stage {
            name: NAME,
            outcome: "not run (a test filter was given)".into(),
            ok: true,
        };
    }
    if !cmd::is_root() {
        let required = std::env::var_os(tests_env::REQUIRE).is_some_and(|v| v == "1");
        eprintln!(
            "\n!!!!!!!! {} {NAME}: it needs root to load eBPF (run `sudo -E cargo xtask test`) !!!!!!!!\n",
            if required { "FAILED" } else { "SKIPPED" }
        );
        return Stage {
            name: NAME,
            outcome: if required {
                "FAILED (not root, and MONITOR_REQUIRE_PRIVILEGED=1)".into()
            } else {
                "SKIPPED (not root)".into()
            },
            ok: !required,
        };
    }
    match bench::run_locked(&bench::Options::smoke()) {
        Ok(()) => Stage {
            name: NAME,
            outcome: "ok".into(),
            ok: true,
        },
        Err(e) => {
            eprintln!("xtask: benchmark smoke run failed: {e:#}");
            Stage {
                name: NAME,
                outcome: format!("FAILED ({e})"),
                ok: false,
            }
        }
    }
}

/// Environment the end-to-end harness (tests/src/lib.rs) reads.
mod tests_env {
    /// Absolute path of the daemon under test.
    pub const MONITOR_BIN: &str = "MONITOR_BIN";
    /// `1` in CI: a privileged test that cannot load eBPF fails instead of skipping. Inherited
    /// from our caller, never set here.
    pub const REQUIRE: &str = "MONITOR_REQUIRE_PRIVILEGED";
}
