//! The Debian package and its systemd unit (packaging/debian/monitor.service), end to end.
//!
//! - The package: built with `cargo deb` from monitor/Cargo.toml's metadata, installed with
//!   `dpkg -i`, checked (`monitor check-policy /etc/monitor/policy.toml`, the conffile, the unit
//!   enabled and accepted by `systemd-analyze verify`, the installed daemon started the way the
//!   unit starts it), then purged. It installs and purges the package `monitor` on the machine
//!   that runs the test (CI's, or a developer's VM). The package is made from the debug build
//!   the tests already have (`--profile dev --no-build`): the same metadata and files as a release
//!   `cargo deb -p monitor`, without a second, release build of everything in the test run.
//! - The unit's capability bounding set: the daemon runs with exactly that set (`setpriv`, as
//!   systemd would apply it; no systemd runs on the test machines) and still loads its programs
//!   and names the owner of another user's socket; without `CAP_SYS_PTRACE` or `CAP_DAC_READ_SEARCH`
//!   it cannot, which is why the unit grants them.
//!
//! Run: `cargo build -p monitor && MONITOR_BIN=$PWD/target/debug/monitor \
//!       cargo test -p monitor-tests --test package -- --test-threads=1`

use std::{
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use monitor_tests::{Monitor, monitor_bin, privileged};
use serde_json::Value;

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const UNIT_SOURCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../packaging/debian/monitor.service"
);
const PACKAGE: &str = "monitor";
const INSTALLED_UNIT: &str = "/usr/lib/systemd/system/monitor.service";
const ENABLED_LINK: &str = "/etc/systemd/system/multi-user.target.wants/monitor.service";
const POLICY: &str = "/etc/monitor/policy.toml";
/// Odd loopback ports for the www-data listeners (the detection scenarios use 241xx).
const PRE_PORT: u16 = 24211;
const LIVE_PORT: u16 = 24212;
const TIMEOUT: Duration = Duration::from_secs(10);

#[test]
fn deb_package_installs_checks_and_purges() {
    if !privileged("deb_package_installs_checks_and_purges") {
        return;
    }
    let scratch = Scratch::new("deb");
    let deb = build_deb(&scratch);

    // What the package holds.
    let contents = ok(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for path in [
        "./usr/bin/monitor",
        "./etc/monitor/policy.toml",
        ".{INSTALLED_UNIT}",
    ] {
        let path = path.replace("{INSTALLED_UNIT}", INSTALLED_UNIT);
        assert!(
            contents.contains(&path),
            "{path} missing from the package:\n{contents}"
        );
    }
    let conffiles = ok(Command::new("dpkg-deb")
        .arg("--info")
        .arg(&deb)
        .arg("conffiles"));
    assert_eq!(conffiles.trim(), POLICY, "the policy is a conffile");
    assert_eq!(
        ok(Command::new("dpkg-deb")
            .arg("--field")
            .arg(&deb)
            .arg("Package"))
        .trim(),
        PACKAGE
    );

    // Installed.
    let installed = Installed::install(&deb);
    let status = ok(Command::new("dpkg-query").args(["-W", "-f=${Status}", PACKAGE]));
    assert_eq!(status, "install ok installed");
    assert_eq!(
        ok(Command::new("/usr/bin/monitor").arg("--version")),
        ok(Command::new(monitor_bin()).arg("--version")),
        "the package holds the binary under test"
    );
    let effective = ok(Command::new("/usr/bin/monitor").args(["check-policy", POLICY]));
    assert!(
        effective.starts_with("# monitor effective policy"),
        "check-policy printed:\n{effective}"
    );
    assert_eq!(
        fs::read_to_string(POLICY).expect("installed policy"),
        ok(Command::new("/usr/bin/monitor").arg("default-policy")),
        "/etc/monitor/policy.toml is the embedded default policy"
    );
    // deb-systemd-helper links to /lib/systemd/system/, the same directory on a merged /usr.
    let link = fs::canonicalize(ENABLED_LINK)
        .unwrap_or_else(|e| panic!("the unit is not enabled ({ENABLED_LINK}: {e})"));
    assert_eq!(
        link,
        fs::canonicalize(INSTALLED_UNIT).expect("installed unit")
    );

    if Path::new("/usr/bin/systemd-analyze").exists() {
        let out = run(Command::new("systemd-analyze").args(["verify", INSTALLED_UNIT]));
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify {INSTALLED_UNIT}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        eprintln!("systemd-analyze is not installed: the unit file's syntax was not verified");
    }

    // The installed daemon, started as the installed unit starts it.
    let unit = Unit::read(Path::new(INSTALLED_UNIT));
    let mut m = Monitor::start_command(unit.command(&unit.capabilities, None));
    let started = m.wait_for("started", TIMEOUT, |v| v["status"] == "started");
    assert_eq!(started["policy"], POLICY);
    m.stop();
    let audit = run(Command::new("/usr/bin/monitor").args(["audit", "--policy", POLICY]));
    assert!(
        matches!(audit.status.code(), Some(0 | 1)),
        "monitor audit with the installed policy: {}\n{}",
        audit.status,
        String::from_utf8_lossy(&audit.stderr)
    );

    // Purged: nothing left behind.
    installed.purge();
    for path in [
        "/usr/bin/monitor",
        POLICY,
        "/etc/monitor",
        INSTALLED_UNIT,
        ENABLED_LINK,
    ] {
        assert!(
            fs::symlink_metadata(path).is_err(),
            "{path} is left after the purge"
        );
    }
}

#[test]
fn unit_capabilities_are_enough_and_each_is_needed() {
    if !privileged("unit_capabilities_are_enough_and_each_is_needed") {
        return;
    }
    let scratch = Scratch::new("caps");
    let unit = Unit::read(Path::new(UNIT_SOURCE));
    assert!(unit.no_new_privileges, "the unit sets NoNewPrivileges=yes");
    let mut caps = unit.capabilities.clone();
    caps.sort();
    assert_eq!(
        caps,
        [
            "CAP_BPF",
            "CAP_DAC_READ_SEARCH",
            "CAP_PERFMON",
            "CAP_SYS_PTRACE"
        ],
        "the unit's set changed: update this test and the unit's comment together"
    );
    // Loopback listeners alert under this policy: the test's own are on 127.0.0.1.
    let policy = scratch.write(
        "policy.toml",
        "[rules.unexpected_listen]\nallow_loopback = false\nallow = []\n",
    );
    let policy = policy.to_str().expect("UTF-8 path");

    // Another user's socket, listening before the daemon starts.
    let pre = as_www_data(&format!("TCP4-LISTEN:{PRE_PORT},bind=127.0.0.1,reuseaddr"));
    wait_listening(PRE_PORT);

    let mut m = Monitor::start_command(unit.command(
        &unit.capabilities,
        Some(&[
            monitor_bin().to_str().expect("UTF-8 path"),
            "--policy",
            policy,
        ]),
    ));
    let started = m.wait_for("started", TIMEOUT, |v| v["status"] == "started");
    for hook in ["listen", "connect", "exec", "fork", "exit"] {
        assert!(
            started["hooks"][hook]["attached"].is_string(),
            "{hook} did not attach with the unit's capabilities: {}",
            started["hooks"][hook]
        );
    }
    // Of the unit's set, the daemon keeps only what it needs once attached (docs/security.md).
    let kept: Vec<String> = ["CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"]
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    assert!(kept.iter().all(|c| unit.capabilities.contains(c)));
    let mask = caps_mask(&kept);
    let status = fs::read_to_string(format!("/proc/{}/status", m.pid())).expect("daemon status");
    let field = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or_else(|| panic!("no {field} in\n{status}"))
    };
    for name in ["CapEff", "CapPrm"] {
        let value = field(name);
        assert_eq!(value, mask, "{name} of the daemon is {value:#x}");
    }
    // Shrinking the bounding set needs CAP_SETPCAP, which the unit does not grant: it stays the
    // unit's, harmless with no_new_privs set and nothing else permitted.
    let bounding = field("CapBnd");
    assert_eq!(
        bounding,
        caps_mask(&unit.capabilities),
        "CapBnd of the daemon is {bounding:#x}"
    );
    let socat = exe_of("socat");
    let a = m.wait_for("the pre-existing listener's alert", TIMEOUT, |v| {
        v["type"] == "alert" && v["socket"]["local"]["port"] == PRE_PORT
    });
    assert_eq!(a["pre_existing"], true);
    assert_eq!(a["process"]["pid"], pre.pid(), "the owner is known: {a}");
    assert_eq!(a["process"]["exe"], socat.as_str());
    assert_eq!(a["process"]["user"], "www-data");
    // And one that starts listening while the daemon runs.
    let live = as_www_data(&format!("TCP4-LISTEN:{LIVE_PORT},bind=127.0.0.1,reuseaddr"));
    let a = m.wait_for("the live listener's alert", TIMEOUT, |v| {
        v["type"] == "alert" && v["socket"]["local"]["port"] == LIVE_PORT
    });
    assert_eq!(a["pre_existing"], false);
    assert_eq!(a["process"]["pid"], live.pid());
    assert_eq!(a["process"]["exe"], socat.as_str());
    m.stop();

    // Each of the two /proc capabilities is needed to name that owner: `monitor audit` reads
    // /proc as the daemon's start-up does, so it shows it without loading anything.
    let audit = |caps: &[String]| -> Value {
        let mut cmd = unit.command(
            caps,
            Some(&[
                monitor_bin().to_str().expect("UTF-8 path"),
                "audit",
                "--policy",
                policy,
            ]),
        );
        let out = run(&mut cmd);
        assert_eq!(out.status.code(), Some(1), "alerts expected: {out:?}");
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
            .find(|v| v["socket"]["local"]["port"] == PRE_PORT)
            .expect("the listener's alert")
    };
    let a = audit(&unit.capabilities);
    assert_eq!(a["process"]["pid"], pre.pid());
    for dropped in ["CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"] {
        let fewer: Vec<String> = unit
            .capabilities
            .iter()
            .filter(|c| *c != dropped)
            .cloned()
            .collect();
        let a = audit(&fewer);
        assert_eq!(
            (&a["process"]["pid"], &a["process"]["exe"]),
            (&Value::from(0), &Value::Null),
            "without {dropped} the owner should be unknown: {a}"
        );
    }
}

// ---------------------------------------------------------------------------------------------

/// `cargo deb` over the debug build, into the scratch directory; returns the package's path.
fn build_deb(scratch: &Scratch) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out_dir = scratch.dir("deb");
    let out = run(Command::new(cargo)
        .current_dir(WORKSPACE)
        .args([
            "deb",
            "--package",
            "monitor",
            "--profile",
            "dev",
            "--no-build",
            "--fast",
        ])
        .arg("--output")
        .arg(&out_dir));
    assert!(
        out.status.success(),
        "cargo deb failed ({}; `cargo xtask bootstrap` installs cargo-deb):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let debs: Vec<PathBuf> = fs::read_dir(&out_dir)
        .expect("deb dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "one package expected: {debs:?}");
    debs[0].clone()
}

/// The installed package; purged on [`Installed::purge`], or on drop when the test failed first.
struct Installed {
    purged: bool,
}

impl Installed {
    fn install(deb: &Path) -> Self {
        // Another apt or dpkg run on this machine holds dpkg's lock for a while: wait for it.
        let deadline = Instant::now() + Duration::from_mins(2);
        loop {
            let out = run(Command::new("dpkg").arg("-i").arg(deb));
            if out.status.success() {
                return Installed { purged: false };
            }
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("lock") && Instant::now() < deadline,
                "dpkg -i {}: {}\n{stderr}",
                deb.display(),
                out.status
            );
            thread::sleep(Duration::from_secs(1));
        }
    }

    fn purge(mut self) {
        self.purged = true;
        ok(Command::new("dpkg").args(["--purge", PACKAGE]));
        let status = run(Command::new("dpkg-query").args(["-W", "-f=${Status}", PACKAGE]));
        assert!(
            !String::from_utf8_lossy(&status.stdout).contains("installed"),
            "still installed after the purge"
        );
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if !self.purged {
            let _ = Command::new("dpkg").args(["--purge", PACKAGE]).output();
        }
    }
}

/// The parts of a systemd unit this test applies: `ExecStart`, the capability bounding set,
/// `NoNewPrivileges`.
struct Unit {
    exec_start: Vec<String>,
    capabilities: Vec<String>,
    no_new_privileges: bool,
}

impl Unit {
    fn read(path: &Path) -> Self {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut unit = Unit {
            exec_start: Vec::new(),
            capabilities: Vec::new(),
            no_new_privileges: false,
        };
        for line in text.lines().map(str::trim) {
            if line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key {
                "ExecStart" => unit.exec_start = value.split_whitespace().map(Into::into).collect(),
                // Several lines add up, as systemd does (none here starts with `~`).
                "CapabilityBoundingSet" => {
                    unit.capabilities
                        .extend(value.split_whitespace().map(Into::into));
                }
                "NoNewPrivileges" => unit.no_new_privileges = value == "yes",
                _ => {}
            }
        }
        assert!(
            !unit.exec_start.is_empty(),
            "no ExecStart in {}",
            path.display()
        );
        assert!(
            !unit.capabilities.is_empty(),
            "no CapabilityBoundingSet in {}",
            path.display()
        );
        unit
    }

    /// `argv` (the unit's `ExecStart` when `None`) run as root with only `caps` in its bounding
    /// set, and `no_new_privs` when the unit sets it: how systemd starts the unit.
    fn command(&self, caps: &[String], argv: Option<&[&str]>) -> Command {
        let bounding = std::iter::once("-all".to_owned())
            .chain(caps.iter().map(|c| {
                format!(
                    "+{}",
                    c.strip_prefix("CAP_").expect("CAP_ name").to_lowercase()
                )
            }))
            .collect::<Vec<_>>()
            .join(",");
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--bounding-set={bounding}"))
            .arg("--inh-caps=-all");
        if self.no_new_privileges {
            cmd.arg("--no-new-privs");
        }
        cmd.arg("--");
        match argv {
            Some(argv) => cmd.args(argv),
            None => cmd.args(&self.exec_start),
        };
        cmd
    }
}

/// The capability bits of `/proc/<pid>/status` for `caps` (include/uapi/linux/capability.h).
fn caps_mask(caps: &[String]) -> u64 {
    caps.iter()
        .map(|c| match c.as_str() {
            "CAP_DAC_READ_SEARCH" => 2,
            "CAP_SYS_PTRACE" => 19,
            "CAP_SYS_ADMIN" => 21,
            "CAP_SYS_RESOURCE" => 24,
            "CAP_PERFMON" => 38,
            "CAP_BPF" => 39,
            other => panic!("add {other}'s number here"),
        })
        .fold(0, |mask, bit| mask | 1 << bit)
}

/// `socat -u <listen> STDOUT` as www-data, in its own process group (killed on drop).
fn as_www_data(listen: &str) -> Running {
    let child = Command::new("setpriv")
        .args([
            "--reuid=www-data",
            "--regid=www-data",
            "--clear-groups",
            "--",
        ])
        .args(["socat", "-u", listen, "STDOUT"])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start socat as www-data");
    Running(child)
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + TIMEOUT;
    while !monitor::baseline::scan_listeners()
        .expect("scan /proc")
        .iter()
        .any(|l| l.local.port() == port && !l.owners.is_empty())
    {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        thread::sleep(Duration::from_millis(20));
    }
}

struct Running(Child);

impl Running {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        unsafe { libc::kill(-(self.0.id() as libc::pid_t), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn exe_of(name: &str) -> String {
    let out = ok(Command::new("sh").args(["-c", &format!("command -v {name}")]));
    fs::canonicalize(out.trim())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .to_string_lossy()
        .into_owned()
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd`, panics unless it succeeds, returns its stdout.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("monitor-e2e-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn dir(&self, rel: &str) -> PathBuf {
        let p = self.0.join(rel);
        fs::create_dir_all(&p).expect("mkdir");
        p
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
