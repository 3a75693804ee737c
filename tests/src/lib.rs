//! Harness for the privileged end-to-end tests: starts the real daemon, reads its JSON lines,
//! and waits for the records a scenario expects.
//!
//! Run through `cargo xtask test`, which builds the daemon and sets `MONITOR_BIN`. Tests run one at
//! a time (`--test-threads=1`): they share kernel state. A test that cannot load eBPF FAILS when
//! `MONITOR_REQUIRE_PRIVILEGED=1` (CI sets it); otherwise it skips with a loud message.

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod sshd;

/// Scenario sources (config templates, PHP scripts, helper programs).
pub const SCENARIOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
/// The embedded default policy, from which the test policies are derived.
pub const DEFAULT_POLICY: &str = include_str!("../../monitor/src/policy/default_policy.toml");
/// How long a test listens for alerts that must NOT come, after the event they would be about.
pub const QUIET: Duration = Duration::from_secs(2);

/// Set (to `1`) by CI: privileged tests must run, never skip.
pub const REQUIRE_ENV: &str = "MONITOR_REQUIRE_PRIVILEGED";

/// Returns `true` when the test may run. Without root: panics under `MONITOR_REQUIRE_PRIVILEGED=1`,
/// otherwise prints a loud skip message and returns `false`.
pub fn privileged(test: &str) -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    assert!(
        std::env::var(REQUIRE_ENV).as_deref() != Ok("1"),
        "{test}: needs root to load eBPF, and {REQUIRE_ENV}=1 forbids skipping"
    );
    // Written to the stderr handle rather than with eprintln!, which libtest captures and shows
    // only for failing tests: a skip must be visible in a passing run.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!! SKIPPED {test}: needs root to load eBPF (run `sudo cargo xtask test`) !!!!!!!!\n"
    );
    false
}

/// The daemon binary under test: `MONITOR_BIN`, else `target/debug/monitor`.
pub fn monitor_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MONITOR_BIN") {
        return p.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/monitor")
}

/// A running daemon whose stdout lines are parsed as JSON and kept for inspection.
pub struct Monitor {
    child: Child,
    /// Parsed stdout lines; `Err` carries a line that was not JSON (stdout must carry only JSON).
    lines: Receiver<Result<Value, String>>,
    /// Every record received so far, in order.
    pub seen: Vec<Value>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Monitor {
    /// Starts `monitor <args>` and waits for its `started` status record (panics with the
    /// daemon's stderr if it does not arrive, e.g. because eBPF could not load).
    pub fn start(args: &[&str]) -> Self {
        let mut cmd = Command::new(monitor_bin());
        cmd.args(args);
        Self::start_command(cmd)
    }

    /// [`Monitor::start`] for a daemon started by `cmd` (a wrapper that restricts it, say), which
    /// must exec the daemon so that the child's pid is the daemon's.
    pub fn start_command(mut cmd: Command) -> Self {
        let mut child = cmd
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr2 = stderr.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let s = String::from_utf8_lossy(&buf[..n]);
                eprint!("[monitor] {s}");
                stderr2.lock().unwrap().push_str(&s);
            }
        });
        let (tx, rx) = channel();
        thread::spawn(move || {
            // Panicking here would only end this thread; the error is handed to the test thread
            // instead, which fails with it.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str::<Value>(&line)
                    .map_err(|e| format!("stdout line is not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let mut m = Monitor {
            child,
            lines: rx,
            seen: Vec::new(),
            stderr,
        };
        m.wait_for("started status record", Duration::from_mins(1), |v| {
            is_status(v, "started")
        });
        m
    }

    /// Waits until a record matching `pred` arrives (also searching records already seen) and
    /// returns it; panics after `timeout` listing what was seen.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(Ok(v)) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Ok(Err(not_json)) => panic!("{not_json}"),
                Err(e) => {
                    let why = match e {
                        RecvTimeoutError::Timeout => format!("timed out after {timeout:?}"),
                        RecvTimeoutError::Disconnected => {
                            "the daemon closed its stdout".to_string()
                        }
                    };
                    // Give an exiting daemon a moment so that its status is known.
                    thread::sleep(Duration::from_millis(100));
                    let status = self.child.try_wait().ok().flatten();
                    panic!(
                        "{why} waiting for {what}; daemon exit status: {status:?}\n\
                         records seen:\n{}\nstderr:\n{}",
                        self.seen
                            .iter()
                            .map(std::string::ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("\n"),
                        self.stderr.lock().unwrap()
                    );
                }
            }
        }
    }

    /// Collects whatever arrives during `period` (for asserting that something did NOT happen).
    pub fn drain_for(&mut self, period: Duration) -> Vec<Value> {
        let deadline = Instant::now() + period;
        let mut got = Vec::new();
        while let Ok(v) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let v = v.unwrap_or_else(|not_json| panic!("{not_json}"));
            self.seen.push(v.clone());
            got.push(v);
        }
        got
    }

    /// Sends SIGTERM, waits for exit, and returns the final status record (panics when the daemon
    /// does not print one or exits non-zero).
    pub fn stop(self) -> Value {
        self.stop_with_records().0
    }

    /// [`Monitor::stop`], also returning every record the daemon printed.
    pub fn stop_with_records(mut self) -> (Value, Vec<Value>) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let v = self.wait_for("final status record", Duration::from_secs(30), |v| {
            is_status(v, "stopped")
        });
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "daemon exited with {status}");
        (v, std::mem::take(&mut self.seen))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `v` is the daemon's status record `status` (`started`, `stopped` …) in any of its
/// JSON formats: native, OCSF (Application Lifecycle, the status as `metadata.event_code`) or
/// ECS (`event.dataset` `monitor.status`, the status as `event.action`).
pub fn is_status(v: &Value, status: &str) -> bool {
    (v["type"] == "status" && v["status"] == status)
        || (v["class_uid"] == 6002 && v["metadata"]["event_code"] == status)
        || (v["event"]["dataset"] == "monitor.status" && v["event"]["action"] == status)
}

/// Recording for the replay fixtures (tests/scenarios/record.sh sets this up): the daemon runs
/// through tests/scenarios/tee-monitor.sh, which copies its stdout verbatim to
/// `$MONITOR_E2E_RECORD_DIR/raw-<daemon pid>.jsonl`. After the daemon stopped, the event lines
/// about this scenario's processes (this test process and its descendants, leaving out the daemon
/// and its helpers) are copied unedited to `<dir>/<scenario>.jsonl`.
pub fn record(daemon_pid: u32, scenario: &str) {
    record_only(daemon_pid, scenario, &[]);
}

/// [`record`], keeping only the events of `kinds` (all when empty): a scenario whose shells run
/// hundreds of programs keeps what its rules judge.
pub fn record_only(daemon_pid: u32, scenario: &str, kinds: &[&str]) {
    let Some(dir) = std::env::var_os("MONITOR_E2E_RECORD_DIR") else {
        return;
    };
    let raw = Path::new(&dir).join(format!("raw-{daemon_pid}.jsonl"));
    // tee may still be writing the last lines when the daemon has exited.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&raw).unwrap_or_default();
        if text.lines().any(|l| l.contains(r#""status":"stopped""#)) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the final status record in {}",
            raw.display()
        );
        thread::sleep(Duration::from_millis(20));
    };
    let me = std::process::id();
    let monitor_exe = std::env::var("MONITOR_REAL_BIN")
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map(|p| p.to_string_lossy().into_owned());
    let is_daemon = |p: &Value| {
        p["pid"] == daemon_pid || monitor_exe.as_deref().is_some_and(|exe| p["exe"] == exe)
    };
    let ours = |v: &Value| {
        let ancestry = v["ancestry"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        v["type"] == "event"
            && (kinds.is_empty() || kinds.iter().any(|k| v["event"] == *k))
            && !is_daemon(&v["process"])
            && !ancestry.iter().any(is_daemon)
            && (v["process"]["pid"] == me || ancestry.iter().any(|e| e["pid"] == me))
    };
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| ours(&v)))
        .fold(String::new(), |mut kept, l| {
            kept.push_str(l);
            kept.push('\n');
            kept
        });
    let path = Path::new(&dir).join(format!("{scenario}.jsonl"));
    std::fs::write(&path, kept).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    // The raw file stays for inspection; tests/scenarios/record.sh removes it.
}
