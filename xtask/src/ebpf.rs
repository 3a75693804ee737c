//! `cargo xtask build-ebpf`: builds only the eBPF object, the same way monitor/build.rs does it
//! through aya-build 0.2.0 (same target, `-Z build-std=core`, and rustflags), so what this command
//! reports is what the daemon embeds. The clippy stage of `cargo xtask test` lints the crate with
//! the same flags.

use std::{path::PathBuf, process::Command};

use anyhow::{Result, bail};

use crate::{bootstrap::EBPF_TOOLCHAIN, cmd};

const PACKAGE: &str = "monitor-ebpf";
/// The eBPF crate's binary target: the object the loader embeds.
const OBJECT: &str = "monitor";

/// `bpfel-unknown-none` on little-endian hosts (the kernel runs programs in host byte order).
fn target() -> &'static str {
    if cfg!(target_endian = "big") {
        "bpfeb-unknown-none"
    } else {
        "bpfel-unknown-none"
    }
}

/// aya-ebpf reads `bpf_target_arch` to pick the host's `pt_regs` layout; aya-build derives it from
/// the host arch the same way (riscv64gc and friends are all `riscv64`).
fn bpf_target_arch() -> &'static str {
    let arch = std::env::consts::ARCH;
    if arch.starts_with("riscv64") {
        "riscv64"
    } else {
        arch
    }
}

/// `cargo +nightly <subcommand>` for the eBPF crate with the flags of its release build: the bpf
/// target, `-Z build-std=core`, and the rustflags aya-build passes.
fn cargo(subcommand: &str) -> Command {
    let rustflags = [
        format!("--cfg=bpf_target_arch=\"{}\"", bpf_target_arch()),
        "-Cdebuginfo=2".into(),
        "-Clink-arg=--btf".into(),
    ]
    .join("\x1f");
    let toolchain = format!("+{EBPF_TOOLCHAIN}");
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(cmd::workspace_root().join(PACKAGE))
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        // aya-build clears these so that a wrapper set for the outer build cannot pick another rustc.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .args([
            toolchain.as_str(),
            subcommand,
            "--package",
            PACKAGE,
            "--release",
            "--target",
            target(),
        ])
        .args(["-Z", "build-std=core"]);
    cargo
}

/// Builds the eBPF object and returns its path.
pub fn build() -> Result<PathBuf> {
    cmd::run(cargo("build").arg("--bins"))?;
    let object = cmd::target_dir()
        .join(target())
        .join("release")
        .join(OBJECT);
    if !object.is_file() {
        bail!(
            "the build succeeded but {} does not exist",
            object.display()
        );
    }
    Ok(object)
}

/// nightly's clippy over the eBPF crate, checked as it is built (same target, cfg and profile), so
/// that `bpf_target_arch` code and the `no_std` build are what gets linted. Warnings are errors.
pub fn clippy() -> Command {
    let mut clippy = cargo("clippy");
    clippy.args(["--", "-D", "warnings"]);
    clippy
}
