//! The rsyslog forwarding example (packaging/forwarding/rsyslog/monitor.conf) with Debian's real
//! rsyslogd: monitor's records arrive byte for byte, one per line, and its log lines do not.
//!
//! rsyslogd runs in the foreground with a scratch configuration shaped like Debian's
//! /etc/rsyslog.conf (imuxsock loaded, then the drop-in included), listening on a scratch socket
//! instead of /dev/log; the example is used as shipped, with only its output directory moved into
//! the scratch directory. The messages are what journald's syslog forwarding writes to rsyslog's
//! socket for a unit's stdout line (`<PRI>TIMESTAMP IDENTIFIER[PID]: LINE`, one datagram per
//! line), carrying real monitor output: recorded daemon output and the alerts `monitor replay`
//! prints for it, one of them longer than rsyslog's default message size and not ASCII.
//!
//! Run: `cargo build -p monitor && MONITOR_BIN=$PWD/target/debug/monitor \
//!       cargo test -p monitor-tests --test forwarding`

use std::{
    fs,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use monitor_tests::monitor_bin;

const EXAMPLE: &str = include_str!("../../packaging/forwarding/rsyslog/monitor.conf");
/// Where the example writes records; the test moves it into its scratch directory.
const EXAMPLE_OUTPUT_DIR: &str = "/var/log/monitor/";
const RECORDED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../monitor/tests/fixtures/recorded"
);
/// rsyslog's default maxMessageSize: a record longer than this is cut unless the example raised it.
const RSYSLOG_DEFAULT_MAX: usize = 8 * 1024;

#[test]
fn rsyslog_example_delivers_records_intact_one_per_line() {
    let scratch = Scratch::new();
    let records = monitor_output(&scratch);
    assert!(
        records.len() > 100,
        "too little monitor output: {}",
        records.len()
    );
    let long = records.iter().map(String::len).max().expect("records");
    assert!(
        long > 2 * RSYSLOG_DEFAULT_MAX,
        "no long record ({long} bytes)"
    );

    let out_dir = scratch.path("out");
    assert_eq!(
        EXAMPLE.matches(EXAMPLE_OUTPUT_DIR).count(),
        1,
        "the example writes records to {EXAMPLE_OUTPUT_DIR} once"
    );
    let example = scratch.write(
        "monitor.conf",
        &EXAMPLE.replace(EXAMPLE_OUTPUT_DIR, &format!("{}/", out_dir.display())),
    );
    let socket = scratch.path("log.sock");
    let config = scratch.write(
        "rsyslog.conf",
        &format!(
            r#"# Like Debian's /etc/rsyslog.conf: imuxsock first, then the drop-ins, then the rest.
global(workDirectory="{work}")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="{socket}")
include(file="{example}")
*.* action(type="omfile" file="{other}")
"#,
            work = scratch.dir("work").display(),
            socket = socket.display(),
            example = example.display(),
            other = scratch.path("other.log").display(),
        ),
    );

    let check = Command::new(RSYSLOGD)
        .args(["-N1", "-f"])
        .arg(&config)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {RSYSLOGD} (cargo xtask bootstrap installs rsyslog): {e}")
        });
    assert!(
        check.status.success(),
        "rsyslogd -N1 rejects the configuration:\n{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let rsyslogd = Rsyslogd::start(&scratch, &config, &socket);
    let sender = UnixDatagram::unbound().expect("datagram socket");
    let log_line = "[2026-12-03T18:12:29Z INFO  monitor::daemon] process table seeded with 72 processes from /proc";
    let pid = 4321;
    for line in records
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(log_line))
    {
        // journald's forward_syslog(): `<PRI>` (daemon.info for a unit's stdout), an RFC 3164
        // timestamp, `IDENTIFIER[PID]: ` and the line.
        let datagram = format!("<30>Dec  3 18:12:29 monitor[{pid}]: {line}");
        sender
            .send_to(datagram.as_bytes(), &socket)
            .unwrap_or_else(|e| panic!("send to {}: {e}", socket.display()));
    }

    let records_file = out_dir.join("records.jsonl");
    let expected: String = records.iter().flat_map(|r| [r.as_str(), "\n"]).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while fs::read(&records_file).map_or(0, |b| b.len()) < expected.len() {
        assert!(
            Instant::now() < deadline,
            "rsyslog wrote {} of {} bytes to {}",
            fs::read(&records_file).map_or(0, |b| b.len()),
            expected.len(),
            records_file.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
    rsyslogd.stop();

    let got = fs::read_to_string(&records_file).expect("records file");
    if got != expected {
        let first_diff = got
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| got.lines().count().min(expected.lines().count()));
        panic!(
            "records changed on the way: {} lines for {}; first difference at line {}:\n got: {:.300}\nwant: {:.300}",
            got.lines().count(),
            expected.lines().count(),
            first_diff + 1,
            got.lines().nth(first_diff).unwrap_or("<none>"),
            expected.lines().nth(first_diff).unwrap_or("<none>"),
        );
    }
    for line in got.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not one JSON record per line ({e}): {line:.200}"));
    }
    // The daemon's log line went the normal way, not into the records.
    let other = fs::read_to_string(scratch.path("other.log")).unwrap_or_default();
    assert!(
        other.contains(log_line),
        "log line missing from the other logs:\n{other}"
    );
    assert!(
        !other.contains(r#"{"type":"#),
        "records leaked into the other logs:\n{other:.500}"
    );
}

const RSYSLOGD: &str = "/usr/sbin/rsyslogd";

/// Real monitor output, one record a line: the daemon output the end-to-end tests recorded, the
/// alerts `monitor replay` raises on it, and the alert for a web shell with a long, non-ASCII
/// command line.
fn monitor_output(scratch: &Scratch) -> Vec<String> {
    let mut files: Vec<PathBuf> = fs::read_dir(RECORDED)
        .unwrap_or_else(|e| panic!("{RECORDED}: {e}"))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut lines = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("recorded output");
        lines.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
    }
    // A recorded web shell's exec (a shell under php-fpm), now running a long command.
    let shell = lines
        .iter()
        .find(|l| {
            l.contains(r#""event":"exec""#)
                && l.contains(r#""argv":["sh","-c""#)
                && l.contains(r#""web_server":{"#)
        })
        .expect("a recorded web shell exec")
        .clone();
    let mut event: serde_json::Value = serde_json::from_str(&shell).expect("JSON");
    let command = format!("echo {}", "café ☕ déjà-vu ".repeat(1500));
    event["process"]["argv"] = serde_json::json!(["sh", "-c", command]);
    let long = scratch.write("long.jsonl", &format!("{event}\n"));
    files.push(long);
    for file in &files {
        let out = Command::new(monitor_bin())
            .arg("replay")
            .arg(file)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", monitor_bin().display()));
        assert!(
            out.status.success(),
            "monitor replay {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("UTF-8 alerts");
        lines.extend(text.lines().map(str::to_owned));
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("déjà-vu") && l.contains(r#""type":"alert""#)),
        "the long web shell raised no alert"
    );
    lines
}

/// rsyslogd in the foreground with its own pid file; stopped (SIGTERM) on [`Rsyslogd::stop`] or
/// killed on drop.
struct Rsyslogd(Child);

impl Rsyslogd {
    fn start(scratch: &Scratch, config: &Path, socket: &Path) -> Self {
        let log = fs::File::create(scratch.path("rsyslogd.log")).expect("log file");
        let child = Command::new(RSYSLOGD)
            .arg("-n")
            .arg("-f")
            .arg(config)
            .arg("-i")
            .arg(scratch.path("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {RSYSLOGD}: {e}"));
        let mut r = Rsyslogd(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if let Ok(Some(status)) = r.0.try_wait() {
                panic!(
                    "rsyslogd exited with {status}:\n{}",
                    fs::read_to_string(scratch.path("rsyslogd.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not create {}",
                socket.display()
            );
            thread::sleep(Duration::from_millis(20));
        }
        r
    }

    fn stop(mut self) {
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.0.wait().expect("wait for rsyslogd");
        assert!(status.success(), "rsyslogd exited with {status}");
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("monitor-e2e-rsyslog-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn dir(&self, rel: &str) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).expect("mkdir");
        p
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path(rel);
        fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
