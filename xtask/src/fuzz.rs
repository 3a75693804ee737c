//! The fuzz stage of `cargo xtask test`: every target in `fuzz/` (cargo-fuzz, libFuzzer) runs for
//! a few seconds from the corpus kept in the repository. It catches what a change breaks in the
//! decoders and parsers; longer sessions are run by hand (DEVELOPERS.md).
//!
//! The build is cargo-fuzz's development profile without a sanitizer: it compiles in about a
//! minute and a half from nothing on two cores (the release profile takes twice as long, for
//! runs of a few seconds), keeps overflow checks and debug assertions, and a panic is what the
//! targets look for (the code under test is safe Rust). Inputs libFuzzer finds go to a scratch
//! corpus in the target directory, never into `fuzz/corpus/`; a crashing input goes to
//! `<target dir>/fuzz/artifacts/<target>/`.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

use crate::{bootstrap::EBPF_TOOLCHAIN, cmd};

/// Seconds each target runs in `cargo xtask test`.
const SECONDS: u32 = 4;

/// `cargo +nightly fuzz` with the stage's build options, from the workspace root (cargo-fuzz
/// finds `fuzz/` there).
fn cargo_fuzz(subcommand: &str) -> Command {
    let mut c = cmd::cargo();
    c.args([&format!("+{EBPF_TOOLCHAIN}"), "fuzz", subcommand])
        .args(["--dev", "--sanitizer", "none", "--target-dir"])
        .arg(target_dir());
    c
}

fn target_dir() -> PathBuf {
    cmd::target_dir().join("fuzz")
}

/// Builds every target, then runs each for [`SECONDS`]. Returns what failed (the build, or the
/// targets that crashed or timed out); empty when all passed.
pub fn run() -> Result<Vec<String>> {
    if !cmd::status(&mut cargo_fuzz("build"))?.success() {
        return Ok(vec!["the fuzz build failed".into()]);
    }
    let root = cmd::workspace_root();
    let mut list = cmd::cargo();
    list.args([&format!("+{EBPF_TOOLCHAIN}"), "fuzz", "list"]);
    let targets = cmd::output(&mut list)?;
    let mut failed = Vec::new();
    for target in targets.lines().map(str::trim).filter(|t| !t.is_empty()) {
        // A fresh scratch corpus each run: the repository's corpus is the starting point, so a
        // run does not depend on what earlier runs found.
        let scratch = target_dir().join("corpus").join(target);
        let _ = fs::remove_dir_all(&scratch);
        let artifacts = target_dir().join("artifacts").join(target);
        for dir in [&scratch, &artifacts] {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut run = cargo_fuzz("run");
        run.arg(target)
            .arg(&scratch)
            .arg(root.join("fuzz").join("corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={SECONDS}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            // A slow input is a bug too (the daemon reads these files on its hot path or at
            // start-up), but a debug build on a busy two-core machine needs headroom.
            .arg("-timeout=20")
            .arg("-print_final_stats=1");
        let dict = root
            .join("fuzz")
            .join("dicts")
            .join(format!("{target}.dict"));
        if dict.exists() {
            run.arg(format!("-dict={}", dict.display()));
        }
        if !cmd::status(&mut run)?.success() {
            eprintln!(
                "\nxtask: fuzz target `{target}` failed: its input is in {} \
                 (reproduce: cargo +{EBPF_TOOLCHAIN} fuzz run {target} <input>). Fix the code, add a \
                 unit test with the input, and keep the input in fuzz/corpus/{target}/.\n",
                artifacts.display()
            );
            failed.push(target.to_owned());
        }
    }
    Ok(failed)
}
