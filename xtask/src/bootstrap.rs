//! Everything the eBPF build and the tests need that a fresh machine lacks. Each step checks
//! first and does nothing when its work is already done, so running it on every command is cheap.
//!
//! Steps: rustup components (nightly's `rust-src`, which `-Z build-std=core` for
//! `bpfel-unknown-none` needs, and the `rustfmt` and `clippy` that `cargo xtask test` checks with),
//! bpf-linker built against nightly's own LLVM (the linker reads the bitcode rustc emits, so the
//! LLVM versions must match), cargo-deb (the Debian package and its test), cargo-fuzz (the fuzz
//! stage of the tests), tracefs (aya attaches tracepoints by id read from it), the Debian packages
//! the tests start, and the Community ID reference the tests compare with (a Python venv under
//! the target directory).

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{apt, cmd, reference, step::Step};

/// The pinned bpf-linker release: the one the eBPF build is known to work with (it has the
/// `llvm-22` feature nightly's LLVM needs). Pinned so that a new release cannot change the object
/// the daemon embeds behind our back.
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// The pinned cargo-deb release that builds the Debian package (`cargo deb -p monitor`, metadata in
/// monitor/Cargo.toml). Pinned for the same reason: the package's layout and maintainer scripts are
/// cargo-deb's, and the package test checks them.
pub const CARGO_DEB_VERSION: &str = "3.8.0";
/// The pinned cargo-fuzz release that builds and runs the fuzz targets in `fuzz/` (the fuzz stage
/// of `cargo xtask test`, and longer sessions by hand: DEVELOPERS.md). It drives libFuzzer through
/// the `libfuzzer-sys` crate that Cargo.lock pins, and needs nightly (`-Z sanitizer`,
/// `-C passes=sancov-module`), which the eBPF build has already.
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// The toolchain the eBPF crate builds with (monitor-ebpf/rust-toolchain.toml says the same). The
/// format check uses its rustfmt too: rustfmt.toml's import options are nightly-only.
pub const EBPF_TOOLCHAIN: &str = "nightly";
/// The toolchain the userspace crates build and are linted with (rust-toolchain.toml says the same).
const USERSPACE_TOOLCHAIN: &str = "stable";
/// rustup components per toolchain: `rust-src` for `-Z build-std=core`; `rustfmt` and `clippy` for
/// the format and clippy stages of `cargo xtask test` (nightly's clippy lints the eBPF crate).
/// Added here, when missing, rather than listed in the root rust-toolchain.toml (its comment says
/// why).
const COMPONENTS: &[(&str, &[&str])] = &[
    (EBPF_TOOLCHAIN, &["rust-src", "rustfmt", "clippy"]),
    (USERSPACE_TOOLCHAIN, &["clippy"]),
];
const TRACEFS: &str = "/sys/kernel/tracing";

/// What a command needs from the bootstrap.
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent switches, one per optional bootstrap step"
)]
pub struct Needs {
    /// Debian packages to install when missing.
    pub packages: &'static [&'static str],
    /// Corelight's Community ID reference, for the tests (after the packages: it needs
    /// python3-venv).
    pub community_id_reference: bool,
    /// `true`: steps that need root run through `sudo` when we are not root, and fail when that
    /// is impossible (`run`, `bench`). `false`: they are reported as missing instead (`bootstrap`,
    /// and `test`, whose privileged tests then skip loudly or, in CI, fail).
    pub root_required: bool,
    /// tracefs mounted (running the daemon and the tests); a build alone needs none, and cannot
    /// mount it where it runs as root without the right to mount (a container build).
    pub tracefs: bool,
    /// cargo-deb installed (the package test, `cargo xtask bootstrap`).
    pub cargo_deb: bool,
    /// cargo-fuzz installed (the fuzz stage of `cargo xtask test`, `cargo xtask bootstrap`).
    pub cargo_fuzz: bool,
}

/// Runs every bootstrap step. Prints one line when there was nothing to do.
pub fn run(needs: &Needs) -> Result<()> {
    let install_root = install_root()?;
    put_on_path(&install_root.join("bin"))?;

    let mut steps = Vec::new();
    for (toolchain, components) in COMPONENTS {
        steps.push(
            rustup_components(toolchain, components)
                .with_context(|| format!("bootstrap step rustup components for {toolchain}"))?,
        );
    }
    steps.push(bpf_linker(&install_root).context("bootstrap step bpf-linker")?);
    if needs.cargo_deb {
        steps.push(cargo_deb(&install_root).context("bootstrap step cargo-deb")?);
    }
    if needs.cargo_fuzz {
        steps.push(cargo_fuzz(&install_root).context("bootstrap step cargo-fuzz")?);
    }
    if needs.tracefs {
        steps.push(tracefs(needs.root_required).context("bootstrap step tracefs")?);
    }
    steps.push(
        apt::ensure(needs.packages, needs.root_required).context("bootstrap step apt packages")?,
    );
    if needs.community_id_reference {
        steps.push(reference::ensure().context("bootstrap step Community ID reference")?);
    }

    if steps.iter().all(|s| matches!(s, Step::Present(_))) {
        let present: Vec<&str> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Present(what) if !what.is_empty() => Some(what.as_str()),
                _ => None,
            })
            .collect();
        eprintln!("bootstrap: nothing to do ({} present)", present.join(", "));
        return Ok(());
    }
    let mut missing = Vec::new();
    for step in &steps {
        match step {
            Step::Present(what) if !what.is_empty() => eprintln!("bootstrap: ok: {what} present"),
            Step::Present(_) => {}
            Step::Done(what) => eprintln!("bootstrap: done: {what}"),
            Step::Missing(what) => {
                eprintln!("bootstrap: MISSING: {what}");
                missing.push(what.as_str());
            }
        }
    }
    if needs.root_required && !missing.is_empty() {
        bail!("bootstrap incomplete: {}", missing.join("; "));
    }
    Ok(())
}

/// Where `cargo install` puts binaries' parent: `CARGO_INSTALL_ROOT`, else `CARGO_HOME`, else
/// `~/.cargo` (cargo's own order).
fn install_root() -> Result<PathBuf> {
    if let Some(root) = env::var_os("CARGO_INSTALL_ROOT") {
        return Ok(root.into());
    }
    cargo_home()
}

fn cargo_home() -> Result<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME") {
        return Ok(home.into());
    }
    let home = env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?;
    Ok(Path::new(&home).join(".cargo"))
}

/// Puts `dir` first on this process's `PATH`, so that the checks here and rustc (which finds
/// `bpf-linker` on `PATH` when monitor/build.rs builds the eBPF crate) see what we installed.
fn put_on_path(dir: &Path) -> Result<()> {
    let path = env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = env::split_paths(&path).collect();
    if dirs.first().is_some_and(|first| first == dir) {
        return Ok(());
    }
    dirs.retain(|d| d != dir);
    dirs.insert(0, dir.to_path_buf());
    let joined = env::join_paths(dirs).context("cannot build PATH")?;
    // SAFETY: called from `main`'s thread before the xtask starts any other thread (bench's reader
    // threads start after the bootstrap), so nothing reads the environment concurrently.
    unsafe { env::set_var("PATH", joined) };
    Ok(())
}

/// Adds the `components` that `toolchain` lacks, in one `rustup component add`.
fn rustup_components(toolchain: &str, components: &[&str]) -> Result<Step> {
    let installed = cmd::output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        toolchain,
        "--installed",
    ]))?;
    let toolchain_arg = format!("+{toolchain}");
    let version = cmd::output(Command::new("rustc").args([toolchain_arg.as_str(), "-vV"]))?;
    let host = version
        .lines()
        .find_map(|l| l.strip_prefix("host:"))
        .context("`rustc -vV` printed no `host:` line")?
        .trim();
    let missing = missing_components(&installed, host, components);
    if missing.is_empty() {
        return Ok(Step::Present(format!(
            "{toolchain} {}",
            components.join("+")
        )));
    }
    cmd::run(
        Command::new("rustup")
            .args(["component", "add"])
            .args(&missing)
            .args(["--toolchain", toolchain]),
    )?;
    Ok(Step::Done(format!(
        "rustup component(s) {} added to {toolchain}",
        missing.join(" ")
    )))
}

/// The `wanted` components absent from `installed`, the output of `rustup component list
/// --installed`. rustup lists a target-specific component with the target appended
/// (`rustfmt-x86_64-unknown-linux-gnu`) and the others bare (`rust-src`).
fn missing_components<'a>(installed: &str, host: &str, wanted: &[&'a str]) -> Vec<&'a str> {
    let is_installed = |component: &str| {
        installed.lines().any(|line| {
            let name = line.split_whitespace().next().unwrap_or_default();
            name == component
                || name
                    .strip_prefix(component)
                    .and_then(|rest| rest.strip_prefix('-'))
                    == Some(host)
        })
    };
    wanted
        .iter()
        .copied()
        .filter(|c| !is_installed(c))
        .collect()
}

/// Nightly's LLVM, as `rustc -vV` reports it and as its sysroot ships it.
struct NightlyLlvm {
    major: u32,
    sysroot: PathBuf,
}

impl NightlyLlvm {
    fn detect() -> Result<Self> {
        let toolchain = format!("+{EBPF_TOOLCHAIN}");
        let version = cmd::output(Command::new("rustc").args([toolchain.as_str(), "-vV"]))?;
        let llvm = version
            .lines()
            .find_map(|l| l.strip_prefix("LLVM version:"))
            .context("`rustc -vV` printed no `LLVM version:` line")?
            .trim();
        let major = llvm
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .with_context(|| format!("cannot read the LLVM major from {llvm:?}"))?;
        let sysroot =
            cmd::output(Command::new("rustc").args([toolchain.as_str(), "--print", "sysroot"]))?;
        Ok(Self {
            major,
            sysroot: PathBuf::from(sysroot.trim()),
        })
    }

    /// The shared library rustup ships, e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`.
    fn shared_library(&self) -> Result<PathBuf> {
        let lib = self.sysroot.join("lib");
        let prefix = format!("libLLVM.so.{}.", self.major);
        let mut found: Vec<PathBuf> = fs::read_dir(&lib)
            .with_context(|| format!("cannot list {}", lib.display()))?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.contains("-rust-"))
            })
            .collect();
        found.sort();
        found.pop().with_context(|| {
            format!(
                "no {prefix}*-rust-* in {}: is the {EBPF_TOOLCHAIN} toolchain complete?",
                lib.display()
            )
        })
    }
}

/// `Some(version line)` when a `bpf-linker` on PATH runs and reports the pinned version.
fn bpf_linker_version() -> Option<String> {
    let out = Command::new("bpf-linker").arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && text.split_whitespace().any(|w| w == BPF_LINKER_VERSION))
        .then_some(text)
}

fn bpf_linker(install_root: &Path) -> Result<Step> {
    let llvm = NightlyLlvm::detect()?;
    if bpf_linker_version().is_some() {
        return Ok(Step::Present(format!(
            "bpf-linker {BPF_LINKER_VERSION}/LLVM {}",
            llvm.major
        )));
    }

    // bpf-linker's build wants an LLVM install prefix with `lib/libLLVM.so`. Rust's sysroot has the
    // library under its versioned name only, so a small prefix of symlinks stands in for an LLVM
    // install. It must outlive the build: the linker's rpath points at it. When a nightly update
    // replaces the library, the linker stops starting, and this runs again with fresh links.
    let lib = llvm.shared_library()?;
    let prefix = install_root
        .join("llvm-for-bpf-linker")
        .join(format!("llvm-{}", llvm.major));
    let prefix_lib = prefix.join("lib");
    fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("cannot create {}", prefix_lib.display()))?;
    let versioned_name = lib
        .file_name()
        .context("LLVM library path has no file name")?;
    // Links to a previous nightly's library are dangling now: start from an empty lib/.
    for entry in fs::read_dir(&prefix_lib)
        .with_context(|| format!("cannot list {}", prefix_lib.display()))?
        .filter_map(Result::ok)
    {
        let stale = entry.path();
        if stale.is_symlink() {
            fs::remove_file(&stale)
                .with_context(|| format!("cannot remove {}", stale.display()))?;
        }
    }
    for name in [versioned_name, "libLLVM.so".as_ref()] {
        let link = prefix_lib.join(name);
        std::os::unix::fs::symlink(&lib, &link)
            .with_context(|| format!("cannot link {} -> {}", link.display(), lib.display()))?;
    }

    let feature = format!("llvm-{}", llvm.major);
    cmd::run(
        Command::new("cargo")
            .env("LLVM_PREFIX", &prefix)
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
                "--force",
            ])
            .args(["--no-default-features", "--features", &feature])
            .arg("--root")
            .arg(install_root),
    )?;
    match bpf_linker_version() {
        Some(version) => Ok(Step::Done(format!(
            "installed {version} against {EBPF_TOOLCHAIN}'s LLVM {} into {}/bin",
            llvm.major,
            install_root.display()
        ))),
        None => bail!(
            "bpf-linker {BPF_LINKER_VERSION} was installed into {}/bin but `bpf-linker --version` still fails",
            install_root.display()
        ),
    }
}

/// `Some(version line)` when `cargo <subcommand> --version` runs and reports `version`.
fn cargo_subcommand_version(subcommand: &str, version: &str) -> Option<String> {
    let out = Command::new("cargo")
        .args([subcommand, "--version"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && text.split_whitespace().any(|w| w == version)).then_some(text)
}

/// Installs the cargo subcommand `subcommand` from the crate `krate`, pinned at `version`, into
/// the install root unless `cargo <subcommand> --version` already reports that version.
fn cargo_tool(install_root: &Path, krate: &str, subcommand: &str, version: &str) -> Result<Step> {
    if let Some(found) = cargo_subcommand_version(subcommand, version) {
        return Ok(Step::Present(found));
    }
    cmd::run(
        Command::new("cargo")
            .args([
                "install",
                &format!("{krate}@{version}"),
                "--locked",
                "--force",
            ])
            .arg("--root")
            .arg(install_root),
    )?;
    match cargo_subcommand_version(subcommand, version) {
        Some(found) => Ok(Step::Done(format!(
            "installed {found} into {}/bin",
            install_root.display()
        ))),
        None => bail!(
            "{krate} {version} was installed into {}/bin but `cargo {subcommand} --version` still fails",
            install_root.display()
        ),
    }
}

fn cargo_deb(install_root: &Path) -> Result<Step> {
    cargo_tool(install_root, "cargo-deb", "deb", CARGO_DEB_VERSION)
}

fn cargo_fuzz(install_root: &Path) -> Result<Step> {
    cargo_tool(install_root, "cargo-fuzz", "fuzz", CARGO_FUZZ_VERSION)
}

fn tracefs_mounted() -> Result<bool> {
    let mounts =
        fs::read_to_string("/proc/self/mounts").context("cannot read /proc/self/mounts")?;
    Ok(mounts.lines().any(|line| {
        let mut fields = line.split_whitespace();
        let (_source, target, fstype) = (fields.next(), fields.next(), fields.next());
        target == Some(TRACEFS) && fstype == Some("tracefs")
    }))
}

fn tracefs(root_required: bool) -> Result<Step> {
    if tracefs_mounted()? {
        return Ok(Step::Present("tracefs".into()));
    }
    let mount = if root_required || cmd::is_root() {
        cmd::as_root("mount")
    } else {
        None
    };
    let Some(mut mount) = mount else {
        return Ok(Step::Missing(format!(
            "tracefs is not mounted at {TRACEFS} (as root: `mount -t tracefs tracefs {TRACEFS}`)"
        )));
    };
    cmd::run(mount.args(["-t", "tracefs", "tracefs", TRACEFS]))?;
    Ok(Step::Done(format!("mounted tracefs at {TRACEFS}")))
}

#[cfg(test)]
mod tests {
    use super::missing_components;

    #[test]
    fn components_are_found_with_or_without_their_target() {
        let host = "x86_64-unknown-linux-gnu";
        let installed = "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\n\
                         rust-src\nrust-std-x86_64-unknown-linux-gnu\n\
                         rustc-x86_64-unknown-linux-gnu\n";
        assert_eq!(
            missing_components(installed, host, &["rust-src", "clippy", "rustfmt"]),
            ["rustfmt"]
        );
        assert!(missing_components(installed, host, &[]).is_empty());
        // A prefix of other components' names is not one of them.
        assert_eq!(missing_components(installed, host, &["rust"]), ["rust"]);
        assert_eq!(
            missing_components(installed, "aarch64-unknown-linux-gnu", &["clippy"]),
            ["clippy"],
            "a component for another target is not the host's"
        );
    }
}
