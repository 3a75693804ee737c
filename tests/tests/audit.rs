//! `monitor audit` end to end: the real binary judges the real host's listening sockets, in every
//! network namespace, and says so in its exit code: 0 when the policy allows everything that
//! listens, 1 with an odd-port socat listener (on the host, and inside a network namespace this
//! test creates), 2 for a bad policy.
//!
//! The listeners bind 0.0.0.0 of this host or of the namespace, and nothing connects to them. Root
//! is needed to see every socket's owner and to create the namespace; no eBPF is loaded.
//!
//! Run: `cargo build -p monitor && MONITOR_BIN=$PWD/target/debug/monitor \
//!       cargo test -p monitor-tests --test audit -- --test-threads=1`

use std::{
    collections::BTreeSet,
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use monitor::baseline::{ListeningSocket, scan_listeners};
use monitor_tests::{monitor_bin, privileged};
use serde_json::Value;

/// Odd ports for the listeners this test starts (the detection scenarios use 241xx).
const HOST_PORT: u16 = 24201;
const NETNS_PORT: u16 = 24202;
const NETNS_LOOPBACK_PORT: u16 = 24203;

#[test]
fn audit_exit_codes_on_the_real_host() {
    if !privileged("audit_exit_codes_on_the_real_host") {
        return;
    }
    let scratch = Scratch::new();
    let running = scan();
    for port in [HOST_PORT, NETNS_PORT, NETNS_LOOPBACK_PORT] {
        assert!(
            !running.iter().any(|l| l.local.port() == port),
            "port {port} is taken already: {running:?}"
        );
    }

    // 0: a policy allowing every port something listens on now (loopback is allowed anyway).
    let allowing = allowing_what_runs(&scratch);
    let quiet = Audit::run(&["--policy", path_str(&allowing)]);
    assert_eq!(quiet.code, 0, "{quiet}");
    assert!(quiet.alerts.is_empty(), "{quiet}");
    // The embedded default policy is a valid choice too: 0 or 1, never 2.
    let default = Audit::run(&[]);
    assert!(matches!(default.code, 0 | 1), "{default}");

    // 1: an odd port on this host's every address.
    let socat_args = [
        "-u",
        &format!("TCP4-LISTEN:{HOST_PORT},bind=0.0.0.0,reuseaddr"),
        "STDOUT",
    ]
    .map(str::to_owned);
    let host_listener = Running::spawn(Command::new("socat").args(&socat_args));
    wait_for(&format!("socat on {HOST_PORT}"), || {
        scan()
            .into_iter()
            .find(|l| l.local.port() == HOST_PORT && l.owners == [host_listener.pid()])
    });
    let loud = Audit::run(&["--policy", path_str(&allowing)]);
    assert_eq!(loud.code, 1, "{loud}");
    assert_eq!(loud.alerts.len(), 1, "only our listener is new: {loud}");
    let a = &loud.alerts[0];
    assert_alert(a, HOST_PORT, "0.0.0.0");
    assert_eq!(a["process"]["pid"], host_listener.pid());
    assert_eq!(a["process"]["exe"], exe_of("socat"));
    let mut argv = vec!["socat".to_owned()];
    argv.extend(socat_args);
    assert_eq!(a["process"]["argv"], serde_json::json!(argv));
    assert_eq!(a["ancestry"][0]["pid"], std::process::id());
    drop(host_listener);

    // 1: an odd port on every address of a network namespace of its own, whose owner runs there;
    // one on the namespace's loopback only is allowed.
    let ns = NetNs::create(&format!("mon-audit-{}", std::process::id()));
    let ns_listener = Running::spawn(
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "socat", "-u"])
            .arg(format!("TCP4-LISTEN:{NETNS_PORT},bind=0.0.0.0,reuseaddr"))
            .arg("STDOUT"),
    );
    let ns_loopback = Running::spawn(
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "socat", "-u"])
            .arg(format!(
                "TCP4-LISTEN:{NETNS_LOOPBACK_PORT},bind=127.0.0.1,reuseaddr"
            ))
            .arg("STDOUT"),
    );
    let found = wait_for("socat in the namespace", || {
        scan()
            .into_iter()
            .find(|l| l.local.port() == NETNS_PORT && l.owners == [ns_listener.pid()])
    });
    wait_for("the namespace's loopback listener", || {
        scan()
            .into_iter()
            .find(|l| l.local.port() == NETNS_LOOPBACK_PORT && l.owners == [ns_loopback.pid()])
    });
    assert_ne!(
        found.netns,
        netns_of("self"),
        "socat must run in the created namespace"
    );
    let loud = Audit::run(&["--policy", path_str(&allowing)]);
    assert_eq!(loud.code, 1, "{loud}");
    assert_eq!(
        loud.alerts.len(),
        1,
        "only the namespace's 0.0.0.0 listener: {loud}"
    );
    let a = &loud.alerts[0];
    assert_alert(a, NETNS_PORT, "0.0.0.0");
    assert_eq!(a["process"]["pid"], ns_listener.pid());
    assert_eq!(a["process"]["exe"], exe_of("socat"));
    assert!(
        loud.stderr.contains("listening sockets in") && loud.stderr.contains("1 alerts"),
        "the summary line on stderr: {loud}"
    );
    drop(ns_listener);
    drop(ns_loopback);
    drop(ns);

    // 2: bad input, named by file, line and key, before anything is scanned; nothing on stdout.
    let bad = scratch.write(
        "bad.toml",
        "[rules.unexpected_listen]\nallow = [{ port = 70000 }]\n",
    );
    let out = Audit::run(&["--policy", path_str(&bad)]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    let expected = format!(
        "{}:2:19: rules.unexpected_listen.allow[0].port: port 70000 out of range 1-65535",
        bad.display()
    );
    assert!(out.stderr.contains(&expected), "{expected} in: {out}");
    let unknown = scratch.write("unknown.toml", "[rules.unexpected_listen]\nallowed = []\n");
    let out = Audit::run(&["--policy", path_str(&unknown)]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains(&format!("{}:2:1", unknown.display()))
            && out.stderr.contains("allowed"),
        "{out}"
    );
    let missing = scratch.0.join("missing.toml");
    let out = Audit::run(&["--policy", path_str(&missing)]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains(path_str(&missing)), "{out}");
    let lists = scratch.write(
        "lists.toml",
        "[enrichment]\ntor_exits = \"/nonexistent/monitor-test/tor.txt\"\n",
    );
    let out = Audit::run(&["--policy", path_str(&lists)]);
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains("/nonexistent/monitor-test/tor.txt"),
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------

/// One run of `monitor audit`: its exit code, its alerts (every stdout line must be one), stderr.
struct Audit {
    code: i32,
    stdout: String,
    alerts: Vec<Value>,
    stderr: String,
}

impl Audit {
    fn run(args: &[&str]) -> Self {
        let out = Command::new(monitor_bin())
            .arg("audit")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", monitor_bin().display()));
        let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
        let alerts = stdout
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"));
                assert_eq!(v["type"], "alert", "stdout carries only alerts: {l}");
                v
            })
            .collect();
        Audit {
            code: out.status.code().expect("exit code, not a signal"),
            stdout,
            alerts,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Display for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A pre-existing `unexpected_listen` alert on `ip:port`, valid against docs/alert.schema.json.
fn assert_alert(a: &Value, port: u16, ip: &str) {
    let schema: Value = serde_json::from_str(include_str!("../../docs/alert.schema.json"))
        .expect("docs/alert.schema.json is JSON");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("docs/alert.schema.json is a schema");
    let errors: Vec<String> = validator.iter_errors(a).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{a}\n{errors:#?}");
    assert_eq!(a["rule"], "unexpected_listen");
    assert_eq!(a["severity"], "HIGH");
    assert_eq!(a["title"], format!("Unexpected Port Opened: {port}"));
    assert_eq!(a["pre_existing"], true);
    assert_eq!(a["events_lost"], 0);
    assert_eq!(a["socket"]["local"]["port"], port);
    assert_eq!(a["socket"]["local"]["ip"], ip);
}

/// Writes a policy allowing every port that something listens on now (on any address), and
/// checks with `monitor audit` that it is quiet. A listener that starts between the scan and the
/// audit (another program on this machine) makes it try again with that one allowed too.
fn allowing_what_runs(scratch: &Scratch) -> PathBuf {
    for _ in 0..3 {
        let ports: BTreeSet<u16> = scan().iter().map(|l| l.local.port()).collect();
        let entries: Vec<String> = ports
            .iter()
            .map(|p| format!("{{ port = {p}, bind = \"any\" }}"))
            .collect();
        let path = scratch.write(
            "allowing.toml",
            &format!(
                "# Every port listened on when the test started.\n[rules.unexpected_listen]\nallow = [\n    {}\n]\n",
                entries.join(",\n    ")
            ),
        );
        let out = Audit::run(&["--policy", path_str(&path)]);
        match out.code {
            0 => return path,
            // Only a listener that came up since the scan may alert.
            1 if out.alerts.iter().all(|a| {
                a["socket"]["local"]["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .is_some_and(|p| !ports.contains(&p))
            }) => {}
            _ => panic!("a policy allowing every listening port is not quiet: {out}"),
        }
    }
    panic!("the host's listeners kept changing");
}

fn scan() -> Vec<ListeningSocket> {
    scan_listeners().expect("scan /proc")
}

/// Polls `f` every 20 ms for up to 10 s.
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn netns_of(pid: &str) -> u64 {
    let link = fs::read_link(format!("/proc/{pid}/ns/net")).expect("netns link");
    link.to_str()
        .and_then(|s| s.strip_prefix("net:["))
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("odd netns link {}", link.display()))
}

/// The canonical path of a program on PATH (what /proc/<pid>/exe shows).
fn exe_of(name: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .expect("sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!path.is_empty(), "{name} is not installed");
    fs::canonicalize(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .to_string_lossy()
        .into_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display()))
}

/// A started program in its own process group, killed (group and all) on drop.
struct Running(Child);

impl Running {
    fn spawn(cmd: &mut Command) -> Self {
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Running(child)
    }

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

/// A network namespace with its loopback up, deleted on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn create(name: &str) -> Self {
        // Left behind by an aborted run, `add` would fail.
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        let ok = |cmd: &mut Command| {
            let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
            assert!(status.success(), "{cmd:?}: {status}");
        };
        ok(Command::new("ip").args(["netns", "add", name]));
        let ns = NetNs { name: name.into() };
        ok(Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]));
        ns
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A scratch directory, removed on drop, holding the machine-wide lock the detection scenarios
/// take for their fixed ports.
struct Scratch(
    PathBuf,
    #[expect(dead_code, reason = "held for its flock")] fs::File,
);

impl Scratch {
    fn new() -> Self {
        let lock_path = std::env::temp_dir().join("monitor-e2e-detections.lock");
        let lock =
            fs::File::create(&lock_path).unwrap_or_else(|e| panic!("{}: {e}", lock_path.display()));
        let r = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        assert_eq!(r, 0, "flock {}", lock_path.display());
        let dir = std::env::temp_dir().join(format!("monitor-e2e-audit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir, lock)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
