//! Privileged end-to-end tests of the daemon as a daemon (issue 14): SIGHUP reloads with a good and
//! a bad policy, a reader that goes away (`monitor --events | head -1`), a reader that does not
//! read during a connect storm, the capabilities left after start, `--output` with SIGUSR1,
//! `--metrics`, and configuration files others can write.
//!
//! Every socket is on 127.0.0.1 or 0.0.0.0 of this host; every file is in a scratch directory.
//!
//! Run: `cargo xtask test -- daemon` (or, built: `MONITOR_BIN=$PWD/target/debug/monitor \
//!       cargo test -p monitor-tests --test daemon -- --test-threads=1`)

use std::{
    fs,
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use monitor_tests::{Monitor, QUIET, is_status, monitor_bin, privileged};
use serde_json::Value;

const ALERT_TIMEOUT: Duration = Duration::from_secs(10);

/// A scratch directory, mode 0755 and root's (the daemon refuses configuration others can write).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("monitor-e2e-daemon-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod scratch dir");
        Self(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// Writes `rel` with mode 0644 (whatever the umask).
    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        // Through a new file renamed over the old one, as an editor or a config tool does.
        let tmp = self.path(&format!("{rel}.tmp"));
        fs::write(&tmp, text).unwrap_or_else(|e| panic!("{}: {e}", tmp.display()));
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod");
        fs::rename(&tmp, &path).expect("rename");
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn is_alert(v: &Value, rule: &str) -> bool {
    v["type"] == "alert" && v["rule"] == rule
}

fn listen_alert_on(port: u16) -> impl Fn(&Value) -> bool {
    move |v| {
        is_alert(v, "unexpected_listen")
            && v["socket"]["local"]["port"] == port
            && v["process"]["pid"] == std::process::id()
    }
}

fn signal(pid: u32, sig: i32) {
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// Waits for `child` to exit, at most `timeout` (panics, killing it, after that).
fn wait_exit(child: &mut Child, timeout: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {timeout:?}");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// A daemon started by hand: killed if the test panics before it stopped it.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Guard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Reads a pipe to its end in a thread (the daemon's stderr).
fn collect(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

const BAD_PORT_LINE: usize = 4;

// ---------------------------------------------------------------------------------------------
// SIGHUP
// ---------------------------------------------------------------------------------------------

/// A good policy is taken at SIGHUP, kernel side included (loopback listens, left in the kernel
/// while the policy allows them, reach userspace and alert once it does not); a bad one is refused
/// naming file, line and key, and the old policy keeps alerting.
#[test]
fn sighup_reloads_a_good_policy_and_refuses_a_bad_one() {
    if !privileged("sighup_reloads_a_good_policy_and_refuses_a_bad_one") {
        return;
    }
    let scratch = Scratch::new("sighup");
    let policy = scratch.write(
        "policy.toml",
        "[rules.unexpected_listen]\nallow_loopback = true\n",
    );
    // Without --events: the kernel sends only what the policy can alert on.
    let mut m = Monitor::start(&["--policy", path_str(&policy)]);

    // The starting policy allows loopback listens: nothing.
    let lo1 = TcpListener::bind("127.0.0.1:24301").expect("bind 127.0.0.1:24301");
    let quiet = m.drain_for(QUIET);
    assert!(
        !quiet.iter().any(listen_alert_on(24301)),
        "a loopback listen alerted under allow_loopback = true: {quiet:#?}"
    );

    // A bad policy: refused, with file, line and key.
    scratch.write(
        "policy.toml",
        "[rules.unexpected_listen]\nallow_loopback = false\nallow = [\n  { port = 70000 },\n]\n",
    );
    signal(m.pid(), libc::SIGHUP);
    let refused = m.wait_for("a refused reload", ALERT_TIMEOUT, |v| {
        is_status(v, "reloaded") && v["reload"]["accepted"] == false
    });
    let error = &refused["reload"]["error"];
    assert_eq!(error["file"], path_str(&policy), "{refused}");
    assert_eq!(error["line"], BAD_PORT_LINE, "{refused}");
    assert_eq!(
        error["key"], "rules.unexpected_listen.allow[0].port",
        "{refused}"
    );
    assert!(
        error["message"].as_str().unwrap().contains("70000"),
        "{refused}"
    );
    assert_eq!(refused["policy_reloads_refused"], 1);
    assert_eq!(refused["policy_reloads"], 0);
    // The old policy still runs: a wildcard listen alerts, a loopback one still does not.
    let any = TcpListener::bind("0.0.0.0:24302").expect("bind 0.0.0.0:24302");
    m.wait_for(
        "unexpected_listen under the old policy",
        ALERT_TIMEOUT,
        listen_alert_on(24302),
    );
    let lo2 = TcpListener::bind("127.0.0.1:24303").expect("bind 127.0.0.1:24303");
    let quiet = m.drain_for(QUIET);
    assert!(
        !quiet.iter().any(listen_alert_on(24303)),
        "the refused policy was applied: {quiet:#?}"
    );

    // A good one: taken, saying what changed.
    scratch.write(
        "policy.toml",
        "dedup_window = \"10m\"\n[rules.unexpected_listen]\nallow_loopback = false\n",
    );
    signal(m.pid(), libc::SIGHUP);
    let taken = m.wait_for("a reload taken", ALERT_TIMEOUT, |v| {
        is_status(v, "reloaded") && v["reload"]["accepted"] == true
    });
    assert_eq!(taken["reload"]["trigger"], "sighup");
    assert_eq!(
        taken["reload"]["changed"],
        serde_json::json!(["dedup_window", "rules.unexpected_listen"]),
        "{taken}"
    );
    assert_eq!(taken["policy_reloads"], 1);
    assert!(taken["reload"].get("error").is_none(), "{taken}");
    // Loopback listens now alert: the kernel's SCOPE map followed the policy.
    let lo3 = TcpListener::bind("127.0.0.1:24304").expect("bind 127.0.0.1:24304");
    let a = m.wait_for(
        "a loopback unexpected_listen under the new policy",
        ALERT_TIMEOUT,
        listen_alert_on(24304),
    );
    assert_eq!(a["socket"]["local"]["ip"], "127.0.0.1");
    drop((lo1, lo2, lo3, any));

    let stopped = m.stop();
    assert_eq!(stopped["policy_reloads"], 1);
    assert_eq!(stopped["policy_reloads_refused"], 1);
    assert_eq!(
        stopped["drops"], 0,
        "events lost across the reloads: {stopped}"
    );
}

/// SIGHUP with a new list: the kernel's watched prefixes follow it, so that a connect to a listed
/// address (which no rule judged before, and which the kernel kept to itself) now raises
/// `egress_listed_ip`.
#[test]
fn sighup_brings_a_new_list_to_the_kernel() {
    if !privileged("sighup_brings_a_new_list_to_the_kernel") {
        return;
    }
    let scratch = Scratch::new("sighup-lists");
    let policy = scratch.write("policy.toml", "dedup_window = \"1h\"\n");
    let mut m = Monitor::start(&["--policy", path_str(&policy)]);
    let c2 = TcpListener::bind("127.0.0.2:24341").expect("bind 127.0.0.2:24341");
    let me = std::process::id();
    let listed = |v: &Value| {
        is_alert(v, "egress_listed_ip")
            && v["process"]["pid"] == me
            && v["socket"]["remote"]["ip"] == "127.0.0.2"
    };
    drop(TcpStream::connect("127.0.0.2:24341").expect("connect"));
    let quiet = m.drain_for(QUIET);
    assert!(
        !quiet.iter().any(listed),
        "listed before any list: {quiet:#?}"
    );

    let list = scratch.write("c2.txt", "# test C2\n127.0.0.2/32\n");
    scratch.write(
        "policy.toml",
        &format!(
            "dedup_window = \"1h\"\n[[enrichment.lists]]\nname = \"c2\"\npath = \"{}\"\n",
            list.display()
        ),
    );
    signal(m.pid(), libc::SIGHUP);
    let taken = m.wait_for("the reload with a list", ALERT_TIMEOUT, |v| {
        is_status(v, "reloaded") && v["reload"]["accepted"] == true
    });
    let changed = taken["reload"]["changed"].as_array().expect("changed");
    assert!(
        changed.contains(&Value::from("enrichment.lists"))
            && changed.contains(&Value::from("enrichment.list:c2")),
        "{taken}"
    );
    assert_eq!(taken["watched_prefixes"], 1, "{taken}");
    assert_eq!(taken["lists"][0]["source"], "list:c2", "{taken}");
    drop(TcpStream::connect("127.0.0.2:24341").expect("connect"));
    let a = m.wait_for("egress_listed_ip after the reload", ALERT_TIMEOUT, listed);
    assert_eq!(a["enrichment"]["lists"], serde_json::json!(["c2"]), "{a}");
    drop(c2);
    m.stop();
}

// ---------------------------------------------------------------------------------------------
// A reader that goes away
// ---------------------------------------------------------------------------------------------

/// `monitor --events | head -1`: head takes the first record and leaves; the daemon notices
/// (EPIPE), says why on stderr and exits 1, detached. With `--on-output-closed=continue` it keeps
/// running until told to stop.
#[test]
fn a_reader_that_goes_away_ends_the_daemon_unless_told_to_continue() {
    if !privileged("a_reader_that_goes_away_ends_the_daemon_unless_told_to_continue") {
        return;
    }
    let scratch = Scratch::new("head");
    let err = scratch.path("stderr");
    let mut shell = Guard(
        Command::new("bash")
            .args([
                "-c",
                r#""$1" --events 2>"$2" | head -1; echo "monitor exit ${PIPESTATUS[0]}""#,
                "bash",
            ])
            .arg(monitor_bin())
            .arg(&err)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("bash"),
    );
    let out = collect(shell.stdout.take().expect("stdout"));
    let status = wait_exit(
        &mut shell,
        Duration::from_mins(1),
        "monitor --events | head -1",
    );
    assert!(status.success(), "{status}");
    let out = out.join().expect("stdout reader");
    let stderr = fs::read_to_string(&err).unwrap_or_default();
    let mut lines = out.lines();
    let first: Value = serde_json::from_str(lines.next().expect("head's line"))
        .unwrap_or_else(|e| panic!("{e}: {out}\nstderr:\n{stderr}"));
    assert!(is_status(&first, "started"), "{first}");
    assert_eq!(
        lines.next(),
        Some("monitor exit 1"),
        "{out}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("the reader of stdout went away (EPIPE)"),
        "stderr:\n{stderr}"
    );
    // The final counts still reach stderr.
    assert!(
        stderr.contains(r#""status":"stopped""#),
        "stderr:\n{stderr}"
    );

    // --on-output-closed=continue: still there after the reader left.
    let mut child = Guard(
        Command::new(monitor_bin())
            .args(["--events", "--on-output-closed=continue"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("monitor"),
    );
    let stderr = collect(child.stderr.take().expect("stderr"));
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("first line");
    assert!(
        is_status(&serde_json::from_str(&line).expect("JSON"), "started"),
        "{line}"
    );
    drop(stdout);
    // Events keep coming (this test's own execs): the first write meets the closed pipe, what
    // follows is dropped.
    for _ in 0..2 {
        for _ in 0..20 {
            let _ = Command::new("true").status();
        }
        thread::sleep(Duration::from_secs(1));
    }
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the daemon stopped although told to continue"
    );
    signal(child.id(), libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(30), "monitor after SIGTERM");
    let stderr = stderr.join().expect("stderr reader");
    assert!(status.success(), "{status}\nstderr:\n{stderr}");
    assert!(stderr.contains("went away"), "stderr:\n{stderr}");
    let stopped = stderr
        .lines()
        .filter_map(|l| l.split_once("status: ").map(|(_, json)| json))
        .filter_map(|json| serde_json::from_str::<Value>(json).ok())
        .find(|v| is_status(v, "stopped"))
        .unwrap_or_else(|| panic!("no stopped status on stderr:\n{stderr}"));
    assert_eq!(stopped["output"]["closed"], true, "{stopped}");
    assert!(
        stopped["output"]["dropped"]["exec"].as_u64().unwrap() > 0,
        "records after the reader left are counted as dropped: {stopped}"
    );
}

// ---------------------------------------------------------------------------------------------
// A reader that does not read
// ---------------------------------------------------------------------------------------------

fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// 10 s of connects with `--events` while nobody reads stdout: the daemon's memory stays within
/// its queue's budget, it keeps running, and once reading resumes the next status record counts
/// what it dropped, by kind.
#[test]
fn a_reader_that_never_reads_costs_drops_not_memory() {
    if !privileged("a_reader_that_never_reads_costs_drops_not_memory") {
        return;
    }
    const QUEUE: u64 = 1 << 20;
    let mut child = Guard(
        Command::new(monitor_bin())
            .args([
                "--events",
                "--status-interval",
                "1",
                "--output-queue-bytes",
                &QUEUE.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("monitor"),
    );
    let pid = child.id();
    let stderr = collect(child.stderr.take().expect("stderr"));
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("started");
    assert!(
        serde_json::from_str::<Value>(&first).is_ok_and(|v| is_status(&v, "started")),
        "{first}"
    );
    // Settle, then the memory the storm is measured against.
    thread::sleep(Duration::from_secs(1));
    let before = rss_kib(pid);

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let stop = Arc::new(AtomicBool::new(false));
    let connects = Arc::new(AtomicU64::new(0));
    let acceptor = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            listener.set_nonblocking(true).expect("nonblocking");
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok(_) => {}
                    Err(_) => thread::sleep(Duration::from_micros(200)),
                }
            }
        })
    };
    let storm: Vec<_> = (0..2)
        .map(|_| {
            let (stop, connects) = (Arc::clone(&stop), Arc::clone(&connects));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if TcpStream::connect(addr).is_ok() {
                        connects.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        peak = peak.max(rss_kib(pid));
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "the daemon died during the storm:\n{}",
            stderr.join().unwrap_or_default()
        );
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for t in storm {
        t.join().expect("storm thread");
    }
    acceptor.join().expect("acceptor");
    let connects = connects.load(Ordering::Relaxed);
    assert!(connects > 1000, "only {connects} connects: no storm");
    // The queue may hold its budget (and a batch); the rest of the daemon does not grow with
    // records it cannot deliver.
    let growth_kib = peak.saturating_sub(before);
    let _ = writeln!(
        std::io::stderr(),
        "storm: {connects} connects in 10 s, daemon RSS {before} KiB before, {peak} KiB at peak"
    );
    assert!(
        growth_kib < 2 * QUEUE / 1024 + 16 * 1024,
        "RSS grew by {growth_kib} KiB (from {before} KiB) with a {QUEUE}-byte queue"
    );

    // Reading again: the next status record counts the drops by kind.
    let deadline = Instant::now() + Duration::from_mins(1);
    let mut line = String::new();
    let running = loop {
        assert!(
            Instant::now() < deadline,
            "no status record after reading resumed"
        );
        line.clear();
        assert!(
            stdout.read_line(&mut line).expect("read") > 0,
            "stdout ended"
        );
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if is_status(&v, "running") && v["output"]["dropped"]["connect"].as_u64() > Some(0) {
            break v;
        }
    };
    let dropped = &running["output"]["dropped"];
    assert_eq!(dropped["alert"], 0, "{running}");
    assert_eq!(dropped["status"], 0, "{running}");
    assert!(
        dropped["accept"].as_u64().unwrap() + dropped["connect"].as_u64().unwrap() > 100,
        "{running}"
    );
    assert_eq!(running["output"]["queue_bytes"], QUEUE);
    // Drain the rest while it stops, cleanly.
    let rest = thread::spawn(move || {
        let mut rest = String::new();
        let _ = stdout.read_to_string(&mut rest);
        rest
    });
    signal(pid, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(30), "monitor after SIGTERM");
    let rest = rest.join().expect("reader");
    assert!(
        status.success(),
        "{status}\n{}",
        stderr.join().unwrap_or_default()
    );
    assert!(
        rest.contains(r#""status":"stopped""#),
        "no final status record"
    );
}

// ---------------------------------------------------------------------------------------------
// Least privilege
// ---------------------------------------------------------------------------------------------

/// After start every thread of the daemon holds exactly `CAP_SYS_PTRACE` and `CAP_DAC_READ_SEARCH`
/// (effective, permitted, bounding), nothing inheritable or ambient, and `no_new_privs`.
#[test]
fn capabilities_after_start() {
    if !privileged("capabilities_after_start") {
        return;
    }
    const CAP_DAC_READ_SEARCH: u32 = 2;
    const CAP_SYS_PTRACE: u32 = 19;
    let kept = format!(
        "{:016x}",
        (1u64 << CAP_SYS_PTRACE) | (1u64 << CAP_DAC_READ_SEARCH)
    );
    let mut m = Monitor::start(&[]);
    // It still works: an alert after the drop (the kernel's maps were updated, /proc read).
    let any = TcpListener::bind("0.0.0.0:24311").expect("bind 0.0.0.0:24311");
    let alert = m.wait_for(
        "unexpected_listen after the drop",
        ALERT_TIMEOUT,
        listen_alert_on(24311),
    );
    assert_eq!(
        alert["process"]["exe"],
        fs::read_link("/proc/self/exe").unwrap().to_str().unwrap(),
        "the process's executable is read through /proc after the drop"
    );
    drop(any);
    let tasks: Vec<PathBuf> = fs::read_dir(format!("/proc/{}/task", m.pid()))
        .expect("task dir")
        .map(|e| e.expect("task").path())
        .collect();
    assert!(tasks.len() >= 2, "the writer thread: {tasks:?}");
    for task in &tasks {
        let status = fs::read_to_string(task.join("status")).expect("status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} missing from {}", task.display()))
                .trim()
                .to_owned()
        };
        assert_eq!(field("CapEff:"), kept, "{}:\n{status}", task.display());
        assert_eq!(field("CapPrm:"), kept, "{}:\n{status}", task.display());
        assert_eq!(field("CapBnd:"), kept, "{}:\n{status}", task.display());
        assert_eq!(field("CapInh:"), "0000000000000000", "{}", task.display());
        assert_eq!(field("CapAmb:"), "0000000000000000", "{}", task.display());
        assert_eq!(field("NoNewPrivs:"), "1", "{}", task.display());
    }
    m.stop();
}

/// A policy or a list file that others can write, or that is not root's, stops the daemon with
/// exit code 2 naming the file; `--insecure-config` takes them.
#[test]
fn configuration_others_can_write_is_refused() {
    if !privileged("configuration_others_can_write_is_refused") {
        return;
    }
    let scratch = Scratch::new("insecure");
    let refused = |args: &[&str], file: &Path, why: &str| {
        let out = Command::new(monitor_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("monitor");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing printed before the refusal");
        assert!(
            stderr.contains(path_str(file)) && stderr.contains(why),
            "{args:?}: {stderr}"
        );
    };
    let policy = scratch.write("policy.toml", "dedup_window = \"5m\"\n");
    fs::set_permissions(&policy, fs::Permissions::from_mode(0o664)).expect("chmod");
    refused(
        &["--policy", path_str(&policy)],
        &policy,
        "writable by its group or by others (mode 0664)",
    );

    let list = scratch.write("tor.txt", "198.51.100.7\n");
    std::os::unix::fs::chown(&list, Some(33), None).expect("chown www-data");
    let policy = scratch.write(
        "policy.toml",
        &format!("[enrichment]\ntor_exits = \"{}\"\n", list.display()),
    );
    refused(
        &["--policy", path_str(&policy)],
        &list,
        "owned by uid 33, not root",
    );

    // --insecure-config: started, and the list is served.
    let m = Monitor::start(&["--policy", path_str(&policy), "--insecure-config"]);
    let started = m.seen[0].clone();
    assert_eq!(started["lists"][0]["entries"], 1, "{started}");
    m.stop();
}

// ---------------------------------------------------------------------------------------------
// --output and --metrics
// ---------------------------------------------------------------------------------------------

fn read_records(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn wait_file(path: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = read_records(path).into_iter().find(|v| pred(v)) {
            return v;
        }
        if Instant::now() >= deadline {
            let dir = path.parent().expect("parent");
            let mut files = String::new();
            for entry in fs::read_dir(dir).expect("scratch dir").flatten() {
                let text = fs::read_to_string(entry.path()).unwrap_or_default();
                files.push_str("--- ");
                files.push_str(&entry.path().display().to_string());
                files.push('\n');
                files.push_str(&text);
                files.push('\n');
            }
            panic!("{what} not in {}:\n{files}", path.display());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// `--output FILE`: records go to the file, not stdout; after logrotate's rename and SIGUSR1
/// they go to a new file of the same name.
#[test]
fn output_file_is_reopened_on_sigusr1() {
    if !privileged("output_file_is_reopened_on_sigusr1") {
        return;
    }
    let scratch = Scratch::new("output");
    let file = scratch.path("monitor.jsonl");
    let mut child = Guard(
        Command::new(monitor_bin())
            .args(["--output", path_str(&file)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("monitor"),
    );
    let stdout = collect(child.stdout.take().expect("stdout"));
    // The daemon's log goes to a file of the scratch directory, shown when a wait fails.
    let log = scratch.path("stderr.log");
    let stderr = {
        let log = log.clone();
        let mut pipe = child.stderr.take().expect("stderr");
        thread::spawn(move || {
            let mut sink = fs::File::create(&log).expect("log");
            let _ = std::io::copy(&mut pipe, &mut sink);
            fs::read_to_string(&log).unwrap_or_default()
        })
    };
    wait_file(&file, "the started record", |v| is_status(v, "started"));
    let mode = fs::metadata(&file).expect("output").permissions().mode();
    assert_eq!(mode & 0o7777, 0o640, "{mode:o}");

    let before = TcpListener::bind("0.0.0.0:24321").expect("bind 0.0.0.0:24321");
    wait_file(&file, "the alert before rotation", listen_alert_on(24321));
    let rotated = scratch.path("monitor.jsonl.1");
    fs::rename(&file, &rotated).expect("rotate");
    signal(child.id(), libc::SIGUSR1);
    // What the daemon wrote between the rename and the signal's handling went to the renamed
    // file (as logrotate expects): wait for the reopen before the next record.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("reopened")
    {
        assert!(Instant::now() < deadline, "SIGUSR1 not handled");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(file.exists(), "no new file after the reopen");
    let after = TcpListener::bind("0.0.0.0:24322").expect("bind 0.0.0.0:24322");
    wait_file(&file, "the alert after rotation", listen_alert_on(24322));
    drop((before, after));
    signal(child.id(), libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(30), "monitor after SIGTERM");
    let stderr = stderr.join().expect("stderr");
    assert!(status.success(), "{status}\n{stderr}");
    assert_eq!(stdout.join().expect("stdout"), "", "records went to stdout");

    let old = read_records(&rotated);
    let new = read_records(&file);
    assert!(old.iter().any(|v| is_status(v, "started")));
    assert!(old.iter().any(listen_alert_on(24321)));
    assert!(
        !old.iter().any(listen_alert_on(24322)),
        "written to the rotated file"
    );
    assert!(!new.iter().any(listen_alert_on(24321)));
    assert!(new.iter().any(|v| is_status(v, "stopped")), "{new:#?}");
    assert!(stderr.contains("reopened"), "{stderr}");
}

fn http_get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to --metrics");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    (head.to_owned(), body.to_owned())
}

/// `--metrics PORT` serves the status record's counters on loopback; a scrape sees an alert
/// counted by rule.
#[test]
fn metrics_are_scraped() {
    if !privileged("metrics_are_scraped") {
        return;
    }
    // A free port, released for the daemon.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut m = Monitor::start(&["--metrics", &port.to_string()]);
    let any = TcpListener::bind("0.0.0.0:24331").expect("bind 0.0.0.0:24331");
    m.wait_for("unexpected_listen", ALERT_TIMEOUT, listen_alert_on(24331));
    drop(any);
    let (head, body) = http_get(port, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("openmetrics-text"),
        "{head}"
    );
    let value = |line_start: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(line_start))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{line_start} missing from\n{body}"))
    };
    assert!(value("monitor_alerts_total{rule=\"unexpected_listen\"}") >= 1);
    assert!(value("monitor_events_total{kind=\"listen\"}") >= 1);
    assert!(value("monitor_resident_memory_bytes") > 1 << 20);
    assert_eq!(value("monitor_kernel_drops_total"), 0);
    assert_eq!(value("monitor_output_dropped_total{kind=\"alert\"}"), 0);
    assert!(body.ends_with("# EOF\n"), "{body}");
    // Nothing else is served, and only on loopback.
    let (head, _) = http_get(port, "/");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let listening = fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    assert!(
        listening
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&local)
                && l.split_whitespace().nth(3) == Some("0A")),
        "not listening on 127.0.0.1:{port} only:\n{listening}"
    );
    m.stop();
}
