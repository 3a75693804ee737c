//! Thin wrappers around `std::process::Command`: every command the xtask runs is echoed first, so
//! a CI log shows exactly what to re-run by hand.

use std::{
    env,
    ffi::OsStr,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// The workspace root (the xtask crate lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The cargo target directory: `CARGO_TARGET_DIR` when set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// `cargo` for the userspace crates, run from the workspace root. rustup's `RUSTUP_TOOLCHAIN` from
/// our own invocation is dropped so that the root rust-toolchain.toml (stable) decides, even when
/// `cargo xtask` was started from monitor-ebpf/ (nightly).
pub fn cargo() -> Command {
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(workspace_root())
        .env_remove("RUSTUP_TOOLCHAIN");
    cargo
}

/// Renders a command the way a user would type it in a shell (env assignments, program, args).
pub fn display(cmd: &Command) -> String {
    let mut out = String::new();
    if let Some(dir) = cmd.get_current_dir() {
        let _ = write!(out, "(cd {} && ", dir.display());
    }
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            let _ = write!(out, "{}={} ", key.to_string_lossy(), quote(value));
        }
    }
    out.push_str(&quote(cmd.get_program()));
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&quote(arg));
    }
    if cmd.get_current_dir().is_some() {
        out.push(')');
    }
    out
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''").replace('\x1f', r"\x1f"))
    }
}

/// Runs `cmd` with inherited stdio and returns its exit status (for callers that collect failures).
pub fn status(cmd: &mut Command) -> Result<ExitStatus> {
    eprintln!("xtask: $ {}", display(cmd));
    cmd.status()
        .with_context(|| format!("cannot start `{}`", display(cmd)))
}

/// Runs `cmd` with inherited stdio and fails unless it exits successfully.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = status(cmd)?;
    if !status.success() {
        bail!("`{}` failed: {status}", display(cmd));
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout; fails (with its stderr) unless it exits successfully.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", display(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}\n{}",
            display(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
    }
    String::from_utf8(out.stdout)
        .with_context(|| format!("`{}` printed non-UTF-8 output", display(cmd)))
}

/// The first `name` on `PATH`, if any.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command that needs root: run directly when we are root, through `sudo` when it exists,
/// otherwise `None` (the caller decides whether that is an error or a warning).
pub fn as_root(program: &str) -> Option<Command> {
    if is_root() {
        Some(Command::new(program))
    } else if which("sudo").is_some() {
        let mut cmd = Command::new("sudo");
        cmd.arg(program);
        Some(cmd)
    } else {
        None
    }
}

/// A machine-wide exclusive lock (`flock(2)` on a file in /tmp) held while tests or benchmarks
/// load eBPF programs, start servers or time workloads: two checkouts on one machine (two
/// developers, or a benchmark beside a test run) would otherwise see each other's kernel events
/// and skew each other's timings. Released when dropped (or when the process dies).
pub struct KernelLock {
    /// Held only for its descriptor: closing it releases the lock.
    _file: std::fs::File,
}

impl KernelLock {
    pub const PATH: &str = "/tmp/monitor-kernel-tests.lock";

    /// Waits for the lock, saying so when another holder makes us wait.
    pub fn acquire(what: &str) -> Result<Self> {
        use std::os::fd::AsRawFd as _;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(Self::PATH)
            .with_context(|| format!("cannot open {}", Self::PATH))?;
        // SAFETY: flock(2) on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            eprintln!(
                "xtask: waiting for {} (another test run or benchmark on this machine) before {what}",
                Self::PATH
            );
            // SAFETY: as above; blocks until the other holder releases it.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                bail!(
                    "cannot lock {}: {}",
                    Self::PATH,
                    std::io::Error::last_os_error()
                );
            }
        }
        Ok(Self { _file: file })
    }
}
