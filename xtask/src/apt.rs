//! Debian packages the tests and the benchmark start, installed only when missing.
//!
//! Installing nginx, php-fpm or openssh-server normally starts them (nginx on :80, sshd on :22).
//! The tests start their own instances with their own configuration, so the packaged services must
//! stay stopped: during the install a `policy-rc.d` that answers 101 ("action forbidden") keeps
//! invoke-rc.d and deb-systemd-invoke from starting them, and afterwards they are disabled at boot.

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, Result};

use crate::{cmd, step::Step};

/// Programs the privileged end-to-end tests start (issue 3: real nginx + php-fpm, a socat listener
/// or upstream, `ss` from iproute2 and `ps`/`pgrep` from procps to inspect them; SSH logins: the
/// real OpenSSH server and clients, and sshpass to type a password into `ssh` non-interactively;
/// detection depth: Debian's python3 for the memfd and orphaned-backdoor scenarios, util-linux's
/// setpriv to start a process as www-data and to run the daemon with the systemd unit's capability
/// bounding set; packaging: rsyslog for the forwarding example's test; open UDP ports: `dig` from
/// dnsutils for DNS lookups that must raise nothing; Community ID: python3-venv, for the venv the
/// bootstrap installs Corelight's reference implementation into; the fuzz stage: g++, for
/// libFuzzer, whose C++ sources libfuzzer-sys compiles), and what the benchmark's smoke run (a
/// stage of `cargo xtask test`) needs besides: wrk, the bpftrace peer, bpftool for its programs'
/// names.
pub const TEST_PACKAGES: &[&str] = &[
    "nginx",
    "php-fpm",
    "socat",
    "iproute2",
    "procps",
    "openssh-server",
    "openssh-client",
    "sshpass",
    "python3-minimal",
    "util-linux",
    "rsyslog",
    "wrk",
    "bpftrace",
    "bpftool",
    "dnsutils",
    "python3-venv",
    "g++",
];
/// `cargo xtask bench`: nginx + php-fpm under wrk for the web workload, bpftrace for the peer
/// (bpftool names its programs), `ss` (iproute2) for the polling peer, and linux-perf to profile
/// by hand what the figures point at (docs/benchmarks.md shows how).
pub const BENCH_PACKAGES: &[&str] = &[
    "nginx",
    "php-fpm",
    "iproute2",
    "procps",
    "wrk",
    "bpftrace",
    "bpftool",
    "linux-perf",
];

/// Packages whose install starts a service, and the init script / unit names they bring
/// (`*` matches the PHP version, e.g. `php8.2-fpm`). openssh-server's service is `ssh` (init script
/// /etc/init.d/ssh, unit ssh.service; ssh.socket is only enabled on request): the tests run their
/// own `sshd -f <scratch config>` on a test port, so the packaged one on :22 must neither start now
/// nor at boot. The rsyslog test runs its own `rsyslogd -n -f <scratch config>` on a scratch
/// socket; the packaged service is not needed.
const SERVICES: &[(&str, &str)] = &[
    ("nginx", "nginx"),
    ("php-fpm", "php*-fpm"),
    ("openssh-server", "ssh"),
    ("rsyslog", "rsyslog"),
];

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

fn installed(package: &str) -> Result<bool> {
    // `dpkg-query -W` also succeeds for removed-but-not-purged packages, so read the status.
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .context("cannot run dpkg-query (is this a Debian-based system?)")?;
    Ok(out.status.success()
        && String::from_utf8_lossy(&out.stdout).trim() == "install ok installed")
}

pub fn ensure(packages: &[&str], root_required: bool) -> Result<Step> {
    if packages.is_empty() {
        return Ok(Step::Present(String::new()));
    }
    let mut missing = Vec::new();
    for package in packages {
        if !installed(package)? {
            missing.push(*package);
        }
    }
    if missing.is_empty() {
        return Ok(Step::Present("apt packages".into()));
    }
    // Without root, plain `bootstrap` and `test` report instead of asking for a sudo password.
    if !((root_required || cmd::is_root()) && cmd::as_root("apt-get").is_some()) {
        return Ok(Step::Missing(format!(
            "apt packages {0} (as root: `apt-get install --no-install-recommends {0}`)",
            missing.join(" ")
        )));
    }
    let mut update = cmd::as_root("apt-get").context("apt-get needs root")?;
    update.arg("update");
    // Through `env` rather than Command::env: sudo would drop the variable.
    let mut install = cmd::as_root("env").context("apt-get needs root")?;
    install
        .args([
            "DEBIAN_FRONTEND=noninteractive",
            "apt-get",
            "install",
            "-y",
            "--no-install-recommends",
        ])
        .args(&missing);

    let guard = PolicyRcD::install()?;
    let result = cmd::run(&mut update).and_then(|()| cmd::run(&mut install));
    guard.restore()?;
    result?;

    for (package, pattern) in SERVICES {
        if missing.contains(package) {
            for service in services_matching(pattern) {
                keep_stopped(&service)?;
            }
        }
    }
    Ok(Step::Done(format!(
        "installed apt packages {}",
        missing.join(" ")
    )))
}

/// Writes a `policy-rc.d` forbidding service starts unless one already exists (Docker images ship
/// one; then the system's own answer is kept untouched).
struct PolicyRcD {
    written: bool,
}

impl PolicyRcD {
    fn install() -> Result<Self> {
        if Path::new(POLICY_RC_D).exists() {
            return Ok(Self { written: false });
        }
        let script = format!(
            "printf '#!/bin/sh\\n# written by cargo xtask while installing test packages\\nexit 101\\n' > {POLICY_RC_D} && chmod 755 {POLICY_RC_D}"
        );
        let mut sh = cmd::as_root("sh").context("writing policy-rc.d needs root")?;
        cmd::run(sh.args(["-c", &script]))?;
        Ok(Self { written: true })
    }

    fn restore(self) -> Result<()> {
        if self.written {
            let mut rm = cmd::as_root("rm").context("removing policy-rc.d needs root")?;
            cmd::run(rm.args(["-f", POLICY_RC_D]))?;
        }
        Ok(())
    }
}

/// `name` matches `pattern`, which may hold one `*` standing for any non-empty text.
fn glob_match(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((head, tail)) => {
            name.len() > head.len() + tail.len() && name.starts_with(head) && name.ends_with(tail)
        }
        None => name == pattern,
    }
}

/// Service names under /etc/init.d or systemd's unit directories matching `pattern`.
fn services_matching(pattern: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (dir, suffix) in [
        ("/etc/init.d", ""),
        ("/lib/systemd/system", ".service"),
        ("/usr/lib/systemd/system", ".service"),
    ] {
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(service) = name.strip_suffix(suffix)
                && glob_match(pattern, service)
                && !found.iter().any(|f| f == service)
            {
                found.push(service.to_string());
            }
        }
    }
    found
}

/// Stops `service` if the install started it anyway, and keeps it from starting at boot.
fn keep_stopped(service: &str) -> Result<()> {
    let systemd_running = Path::new("/run/systemd/system").exists();
    if systemd_running {
        let mut systemctl = cmd::as_root("systemctl").context("systemctl needs root")?;
        return cmd::run(systemctl.args(["disable", "--now", "--quiet", service]));
    }
    // No systemd (containers, this kind of VM): SysV scripts through `service` / update-rc.d.
    if cmd::which("service").is_some() {
        let running = Command::new("service")
            .args([service, "status"])
            .output()
            .is_ok_and(|out| out.status.success());
        if running {
            let mut stop = cmd::as_root("service").context("service needs root")?;
            cmd::run(stop.args([service, "stop"]))?;
        }
    }
    // A package may ship a systemd unit only (rsyslog does): then there is no SysV link to remove.
    if cmd::which("update-rc.d").is_some() && Path::new("/etc/init.d").join(service).exists() {
        let mut disable = cmd::as_root("update-rc.d").context("update-rc.d needs root")?;
        cmd::run(disable.args([service, "disable"]))?;
    }
    eprintln!("xtask: {service} stays stopped and disabled; the tests start their own instances");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn service_patterns_match_versioned_names_only() {
        assert!(glob_match("php*-fpm", "php8.2-fpm"));
        assert!(
            !glob_match("php*-fpm", "php-fpm"),
            "the version part may not be empty"
        );
        assert!(!glob_match("php*-fpm", "php8.2-fpm.conf"));
        assert!(glob_match("nginx", "nginx"));
        assert!(!glob_match("nginx", "nginx-debug"));
        // openssh-server's unit is ssh.service; its install adds the alias sshd.service.
        assert!(glob_match("ssh", "ssh"));
        assert!(!glob_match("ssh", "sshd"));
    }
}
