//! Evasions the monitor must still see (issue 14): each case does what a detection watches for
//! without the system call, name or path a naive hook relies on, with the real daemon watching.
//!
//! - a program run through `execveat(2)` and through `fexecve(3)` of a memfd (no path at all);
//! - a connect to an IPv4-mapped IPv6 address, judged as the IPv4 address;
//! - a connect and a listen issued through `io_uring`;
//! - a comm changed with `prctl(PR_SET_NAME)`;
//! - a web server's binary copied to another name;
//! - a setuid program (records carry `euid` beside `uid`).
//!
//! The programs are `scenarios/evasions.c` and `scenarios/rename_comm.c`, compiled with `cc`; the
//! "attacker" runs as www-data (a web server's user) or nobody through `setpriv`. Everything talks
//! to 127.0.0.1 and listens on this host only.
//!
//! Run: `cargo build -p monitor && MONITOR_BIN=$PWD/target/debug/monitor \
//!       cargo test -p monitor-tests --test evasions -- --test-threads=1`

use std::{
    fs,
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use monitor_tests::{DEFAULT_POLICY, Monitor, QUIET, SCENARIOS, monitor_bin, privileged};
use serde_json::{Value, json};

/// How long an expected record may take.
const WAIT: Duration = Duration::from_secs(10);
/// www-data and nobody on Debian.
const WWW_DATA: u32 = 33;
const NOBODY: u32 = 65534;

#[test]
fn exec_through_execveat_and_fexecve_of_a_memfd() {
    if !privileged("exec_through_execveat_and_fexecve_of_a_memfd") {
        return;
    }
    let scratch = Scratch::new("exec");
    let evasions = scratch.compile("evasions");
    let bash = canonical("/usr/bin/bash");
    let mut m = Monitor::start(&["--events"]);

    // execveat(dirfd of /usr/bin, "bash"): the kernel's filename is /dev/fd/N/bash.
    let out = run_as(
        WWW_DATA,
        Command::new(&evasions).args(["execveat", "/usr/bin", "bash", "bash", "-c", "id; true"]),
    );
    assert!(out.contains("uid=33(www-data)"), "{out}");
    let exec = m.wait_for("the exec through execveat", WAIT, |v| {
        is_event(v, "exec") && v["process"]["argv"] == json!(["bash", "-c", "id; true"])
    });
    assert_eq!(exec["process"]["exe"], bash, "{exec}");
    let filename = exec["filename"].as_str().unwrap_or_default();
    assert!(
        filename.starts_with("/dev/fd/") && filename.ends_with("/bash"),
        "execveat's filename names the directory descriptor: {exec}"
    );
    let a = m.wait_for("webserver_shell for the execveat shell", WAIT, |v| {
        is_alert(v, "webserver_shell") && v["process"]["pid"] == exec["process"]["pid"]
    });
    assert_eq!(a["shell_match"], "path", "{a}");
    assert_eq!(a["web_server_via"], "user", "{a}");
    assert_eq!(a["process"]["uid"], WWW_DATA);
    assert_eq!(
        a["title"],
        format!("Shell spawned by web server: {bash} (as www-data)")
    );

    // fexecve of a memfd holding a copy of bash: no path, a deleted-looking exe, known by content.
    // The shell lives on a moment: the daemon reads a memfd's content through /proc/<pid>/exe
    // while its process runs (docs/alerts.md, "Identity by file and content").
    let out = run_as(
        WWW_DATA,
        Command::new(&evasions).args(["fexecve", "/usr/bin/bash", "bash", "-c", "id; sleep 2"]),
    );
    assert!(out.contains("uid=33(www-data)"), "{out}");
    let exec = m.wait_for("the exec through fexecve", WAIT, |v| {
        is_event(v, "exec")
            && v["process"]["argv"] == json!(["bash", "-c", "id; sleep 2"])
            && v["process"]["exe"] == "/memfd:x (deleted)"
    });
    let filename = exec["filename"].as_str().unwrap_or_default();
    assert!(
        filename.starts_with("/dev/fd/") && !filename.ends_with("/bash"),
        "fexecve's filename is the descriptor itself: {exec}"
    );
    let a = m.wait_for("webserver_shell for the memfd shell", WAIT, |v| {
        is_alert(v, "webserver_shell") && v["process"]["pid"] == exec["process"]["pid"]
    });
    assert_eq!(a["shell_match"], "content", "{a}");
    assert_eq!(a["program"]["same_as"], bash, "{a}");
    assert_eq!(a["web_server_via"], "user", "{a}");
    assert_eq!(
        a["title"],
        format!("Shell spawned by web server: /memfd:x (deleted) = {bash} (as www-data)")
    );
    m.stop();
}

#[test]
fn mapped_ipv4_and_io_uring_connects_and_an_io_uring_listen() {
    if !privileged("mapped_ipv4_and_io_uring_connects_and_an_io_uring_listen") {
        return;
    }
    let scratch = Scratch::new("net");
    let evasions = scratch.compile("evasions");
    let policy = scratch.loopback_egress_policy();
    // One destination each: alerts with the same destination would be one, counted.
    let _targets = [24161, 24169].map(|port| {
        let target = Background::start(
            "an egress target",
            Command::new("socat").args([
                "-u",
                &format!("TCP4-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork"),
                "OPEN:/dev/null,wronly",
            ]),
            false,
        );
        wait_port_open(port);
        target
    });
    let exe = canonical(path_str(&evasions));

    // The default mode first: what the kernel sends when only alerts matter (a process running
    // as www-data is in scope), then everything with --events.
    for events in [false, true] {
        let mut args = vec!["--policy", path_str(&policy)];
        if events {
            args.insert(0, "--events");
        }
        let mut m = Monitor::start(&args);

        // An AF_INET6 socket connected to ::ffff:127.0.0.1: judged as 127.0.0.1, which the test
        // policy does not exclude (the default excludes ::ffff:0:0/96 as IPv6, and 127.0.0.0/8).
        run_as(
            WWW_DATA,
            Command::new(&evasions).args(["connect-mapped", "24161"]),
        );
        let a = m.wait_for("webserver_egress for the mapped connect", WAIT, |v| {
            is_alert(v, "webserver_egress")
                && v["process"]["exe"] == exe
                && v["socket"]["family"] == "ipv6"
        });
        assert_eq!(
            a["socket"]["remote"],
            json!({"ip": "127.0.0.1", "port": 24161}),
            "{a}"
        );
        assert_eq!(a["socket"]["mapped_ipv4"], true, "{a}");
        assert_eq!(a["socket"]["local"]["ip"], "127.0.0.1", "{a}");
        assert_eq!(a["web_server_via"], "user", "{a}");
        assert_eq!(
            a["title"],
            format!("Web server egress: {exe} -> 127.0.0.1:24161 (as www-data)")
        );
        if events {
            let e = m.wait_for("the mapped connect's event", WAIT, |v| {
                is_event(v, "connect")
                    && v["process"]["pid"] == a["process"]["pid"]
                    && v["socket"]["remote"]["port"] == 24161
            });
            assert_eq!(e["socket"], a["socket"], "{e}");
        }

        // IORING_OP_CONNECT, inline and from an io-wq worker thread ("iou-wrk-<tid>").
        run_as(
            WWW_DATA,
            Command::new(&evasions).args(["uring-connect", "24169"]),
        );
        let a = m.wait_for("webserver_egress for the io_uring connect", WAIT, |v| {
            is_alert(v, "webserver_egress")
                && v["process"]["exe"] == exe
                && v["socket"]["remote"]["port"] == 24169
        });
        assert_eq!(a["socket"]["remote"]["ip"], "127.0.0.1", "{a}");
        assert_eq!(a["socket"]["family"], "ipv4", "{a}");
        if events {
            let pid = a["process"]["pid"].clone();
            let connects = |m: &Monitor| -> Vec<Value> {
                m.seen
                    .iter()
                    .filter(|v| is_event(v, "connect") && v["process"]["pid"] == pid)
                    .cloned()
                    .collect()
            };
            poll("the second io_uring connect", || {
                m.drain_for(Duration::from_millis(100));
                (connects(&m).len() == 2).then_some(())
            });
            let connects = connects(&m);
            assert!(
                connects.iter().any(|v| v["process"]["comm"]
                    .as_str()
                    .is_some_and(|c| c.starts_with("iou-wrk-"))),
                "one connect comes from an io-wq worker: {connects:#?}"
            );
            for c in &connects {
                assert_ne!(c["socket"]["local"]["port"], 0, "source port known: {c}");
                assert_eq!(c["process"]["exe"], exe, "{c}");
            }
        }

        // IORING_OP_BIND + IORING_OP_LISTEN on 0.0.0.0:24162.
        let mut listener = Background::start(
            "the io_uring listener",
            &mut as_user(
                WWW_DATA,
                Command::new(&evasions).args(["uring-listen", "24162"]),
            ),
            true,
        );
        listener.wait_line("listening");
        let a = m.wait_for("unexpected_listen for the io_uring listen", WAIT, |v| {
            is_alert(v, "unexpected_listen") && v["socket"]["local"]["port"] == 24162
        });
        assert_eq!(a["process"]["pid"], listener.pid(), "{a}");
        assert_eq!(a["process"]["exe"], exe, "{a}");
        assert_eq!(a["socket"]["local"]["ip"], "0.0.0.0", "{a}");
        assert_eq!(a["title"], "Unexpected Port Opened: 24162");
        if events {
            m.wait_for("the io_uring listen's event", WAIT, |v| {
                is_event(v, "listen") && v["socket"]["local"]["port"] == 24162
            });
        }
        drop(listener);

        // IORING_OP_LISTEN without a bind: listen picks the port, which the record must name.
        let mut listener = Background::start(
            "the autobound io_uring listener",
            &mut as_user(
                WWW_DATA,
                Command::new(&evasions).args(["uring-listen", "auto"]),
            ),
            true,
        );
        listener.wait_line("listening");
        let port = listening_port_of(listener.pid());
        let a = m.wait_for("unexpected_listen for the autobound listen", WAIT, |v| {
            is_alert(v, "unexpected_listen") && v["process"]["pid"] == listener.pid()
        });
        assert_eq!(a["socket"]["local"]["port"], port, "{a}");
        assert_eq!(a["title"], format!("Unexpected Port Opened: {port}"));
        drop(listener);
        m.stop();
    }
}

#[test]
fn renamed_comm_hides_neither_web_shell_nor_listener() {
    if !privileged("renamed_comm_hides_neither_web_shell_nor_listener") {
        return;
    }
    let scratch = Scratch::new("comm");
    let rename_comm = scratch.compile("rename_comm");
    let exe = canonical(path_str(&rename_comm));
    let policy = scratch.loopback_egress_policy();
    let _target = Background::start(
        "the egress target",
        Command::new("socat").args([
            "-u",
            "TCP4-LISTEN:24161,bind=127.0.0.1,reuseaddr,fork",
            "OPEN:/dev/null,wronly",
        ]),
        false,
    );
    wait_port_open(24161);
    let mut m = Monitor::start(&["--policy", path_str(&policy)]);

    // A www-data backdoor calling itself sshd listens on 24163, connects out and runs a shell.
    let mut backdoor = Background::start(
        "the renamed backdoor",
        &mut as_user(
            WWW_DATA,
            Command::new(&rename_comm).args(["24161", "sshd", "24163"]),
        ),
        true,
    );
    backdoor.wait_line("listening");
    let a = m.wait_for("unexpected_listen for the renamed listener", WAIT, |v| {
        is_alert(v, "unexpected_listen") && v["socket"]["local"]["port"] == 24163
    });
    assert_eq!(
        a["process"]["comm"], "sshd",
        "it really renamed itself: {a}"
    );
    assert_eq!(a["process"]["exe"], exe, "{a}");
    let a = m.wait_for("webserver_egress from the renamed backdoor", WAIT, |v| {
        is_alert(v, "webserver_egress") && v["process"]["pid"] == backdoor.pid()
    });
    assert_eq!(a["process"]["comm"], "sshd", "{a}");
    assert_eq!(a["web_server_via"], "user", "{a}");
    let a = m.wait_for("webserver_shell under the renamed backdoor", WAIT, |v| {
        is_alert(v, "webserver_shell") && v["ancestry"][0]["pid"] == backdoor.pid()
    });
    // Lineage is by pid and executable (an ancestor's comm is the one it exec'd with).
    assert_eq!(a["ancestry"][0]["exe"], exe, "{a}");
    assert_eq!(a["process"]["exe"], canonical("/bin/sh"), "{a}");
    drop(backdoor);
    m.stop();
}

/// A copy of nginx under another name is a web server by content (the daemon catalogues the
/// host's web servers by inode, size and SHA-256: docs/alerts.md, "Identity by file and
/// content"), whatever the policy's globs say; a copy changed by one byte is another program,
/// judged by its path only. Its workers run as nobody here, so that no web server user decides.
#[test]
fn copied_web_server_is_known_by_content() {
    if !privileged("copied_web_server_is_known_by_content") {
        return;
    }
    let scratch = Scratch::new("copy");
    let policy = scratch.loopback_egress_policy();
    let nginx = canonical("/usr/sbin/nginx");
    let copy = scratch.path("srv");
    fs::copy(&nginx, &copy).expect("copy nginx");
    let mut bytes = fs::read(&nginx).expect("read nginx");
    bytes.push(0);
    let changed = scratch.path("srv-changed");
    fs::write(&changed, bytes).expect("write the changed copy");
    for p in [&copy, &changed] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let reply = scratch.write(
        "reply.http",
        "HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nupstream\n",
    );
    let _upstream = Background::start(
        "the upstream",
        Command::new("socat").args([
            "-U",
            "TCP4-LISTEN:24165,bind=127.0.0.1,reuseaddr,fork",
            &format!("OPEN:{}", reply.display()),
        ]),
        false,
    );
    wait_port_open(24165);
    let mut m = Monitor::start(&["--events", "--policy", path_str(&policy)]);

    for (binary, known) in [(&copy, true), (&changed, false)] {
        let exe = path_str(binary).to_owned();
        let conf = scratch.write(
            "nginx.conf",
            &format!(
                "worker_processes 1;\nuser nobody nogroup;\npid {dir}/nginx.pid;\n\
                 error_log {dir}/error.log info;\ndaemon off;\nevents {{ worker_connections 16; }}\n\
                 http {{\n access_log off;\n client_body_temp_path {dir}/body;\n\
                 proxy_temp_path {dir}/proxy;\n fastcgi_temp_path {dir}/fastcgi;\n\
                 uwsgi_temp_path {dir}/uwsgi;\n scgi_temp_path {dir}/scgi;\n\
                 server {{\n  listen 127.0.0.1:24164;\n\
                 location / {{ proxy_pass http://127.0.0.1:24165/; proxy_read_timeout 2s; }}\n }}\n}}\n",
                dir = path_str(&scratch.0)
            ),
        );
        let server = Background::start(
            "the nginx copy",
            Command::new(binary).args(["-c", path_str(&conf)]),
            false,
        );
        wait_port_open(24164);
        let body = http_get(24164);
        assert!(body.ends_with("upstream\n"), "proxy through {exe}: {body}");
        let connect = m.wait_for("the worker's connect to the upstream", WAIT, |v| {
            is_event(v, "connect")
                && v["process"]["exe"] == exe
                && v["socket"]["remote"]["port"] == 24165
        });
        assert_eq!(connect["process"]["uid"], NOBODY, "{connect}");
        if known {
            let a = m.wait_for("webserver_egress from the copy", WAIT, |v| {
                is_alert(v, "webserver_egress") && v["process"]["exe"] == exe
            });
            assert_eq!(a["web_server_via"], "lineage", "{a}");
            assert_eq!(a["web_server"]["exe"], exe, "{a}");
            assert_eq!(a["web_server"]["matched"], "content", "{a}");
            assert_eq!(a["program"]["web_server"], "content", "{a}");
            assert_eq!(a["program"]["same_as"], nginx, "{a}");
        } else {
            m.drain_for(QUIET);
            let raised: Vec<&Value> = m
                .seen
                .iter()
                .filter(|v| is_alert(v, "webserver_egress") && v["process"]["exe"] == exe)
                .collect();
            assert!(
                raised.is_empty(),
                "a changed copy is not nginx: {raised:#?}"
            );
            assert!(connect["web_server"].is_null(), "{connect}");
        }
        // The next copy listens on the same port.
        drop(server);
        wait_port_closed(24164);
    }
    m.stop();
}

/// A setuid-root copy of a small program run by nobody: its records carry `uid` 65534 and
/// `euid` 0, from the kernel (exec, listen, connect) and the table (exit); a copy without the
/// bit carries 65534 twice. A root process that only switched its effective uid connects with
/// it.
#[test]
fn setuid_program_records_carry_euid() {
    if !privileged("setuid_program_records_carry_euid") {
        return;
    }
    let scratch = Scratch::new("suid");
    let plain = scratch.compile("evasions");
    let suid = scratch.path("suid-evasions");
    fs::copy(&plain, &suid).expect("copy");
    // Root owns it (we are root); the set-user-ID bit makes exec run it with euid 0.
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755)).expect("chmod u+s");
    let _target = Background::start(
        "the connect target",
        Command::new("socat").args([
            "-u",
            "TCP4-LISTEN:24167,bind=127.0.0.1,reuseaddr,fork",
            "OPEN:/dev/null,wronly",
        ]),
        false,
    );
    wait_port_open(24167);
    let mut m = Monitor::start(&["--events"]);

    for (binary, euid, port) in [(&suid, 0, "24166"), (&plain, NOBODY, "24168")] {
        let exe = path_str(binary).to_owned();
        let mut program = Background::start(
            "the setuid program",
            &mut as_user(
                NOBODY,
                Command::new(binary).args(["listen-connect", port, "24167"]),
            ),
            true,
        );
        program.wait_line("listening");
        let status = fs::read_to_string(format!("/proc/{}/status", program.pid())).expect("status");
        let uids = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .expect("Uid line");
        let ids: Vec<u32> = uids
            .split_whitespace()
            .map(|u| u.parse().expect("uid"))
            .collect();
        assert_eq!(
            ids[..2],
            [NOBODY, euid],
            "the kernel's view of {exe}: {status}"
        );

        let exec = m.wait_for("the program's exec", WAIT, |v| {
            is_event(v, "exec") && v["process"]["exe"] == exe
        });
        let listen = m.wait_for("its listen", WAIT, |v| {
            is_event(v, "listen") && v["process"]["exe"] == exe
        });
        let connect = m.wait_for("its connect", WAIT, |v| {
            is_event(v, "connect")
                && v["process"]["exe"] == exe
                && v["socket"]["remote"]["port"] == 24167
        });
        let alert = m.wait_for("unexpected_listen for it", WAIT, |v| {
            is_alert(v, "unexpected_listen") && v["process"]["exe"] == exe
        });
        for v in [&exec, &listen, &connect, &alert] {
            assert_eq!(v["process"]["uid"], NOBODY, "{v}");
            assert_eq!(v["process"]["euid"], euid, "{v}");
            assert_eq!(v["process"]["user"], "nobody", "{v}");
        }
        let pid = program.pid();
        drop(program);
        let exit = m.wait_for("its exit", WAIT, |v| {
            is_event(v, "exit") && v["process"]["pid"] == pid
        });
        assert_eq!(exit["process"]["euid"], euid, "{exit}");
    }

    // Root lends itself nobody's effective uid (seteuid changes no real uid, so no record says
    // so) and connects: only the kernel's read of the credentials at the connect knows.
    let out = Command::new(&plain)
        .args(["seteuid-connect", &NOBODY.to_string(), "24167"])
        .output()
        .expect("run seteuid-connect");
    assert!(out.status.success(), "{out:?}");
    let connect = m.wait_for("the connect after seteuid", WAIT, |v| {
        is_event(v, "connect")
            && v["process"]["argv"][1] == "seteuid-connect"
            && v["socket"]["remote"]["port"] == 24167
    });
    assert_eq!(connect["process"]["uid"], 0, "{connect}");
    assert_eq!(connect["process"]["euid"], NOBODY, "{connect}");
    m.stop();
}

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------

fn is_alert(v: &Value, rule: &str) -> bool {
    v["type"] == "alert" && v["rule"] == rule
}

fn is_event(v: &Value, kind: &str) -> bool {
    v["type"] == "event" && v["event"] == kind
}

/// A scratch directory everyone may read and run from (the programs run as www-data and
/// nobody), removed on drop. It holds a machine-wide lock for the test's fixed ports.
struct Scratch(
    PathBuf,
    #[expect(dead_code, reason = "held for its flock")] fs::File,
);

impl Scratch {
    fn new(name: &str) -> Self {
        let lock_path = std::env::temp_dir().join("monitor-e2e-evasions.lock");
        let lock =
            fs::File::create(&lock_path).unwrap_or_else(|e| panic!("{}: {e}", lock_path.display()));
        // Blocks until another run's test is over; released when the file is closed.
        let r = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        assert_eq!(r, 0, "flock {}", lock_path.display());
        let dir =
            std::env::temp_dir().join(format!("monitor-e2e-ev-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod scratch dir");
        Scratch(dir, lock)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let p = self.path(rel);
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).expect("chmod");
        p
    }

    /// Compiles `scenarios/<name>.c` into the scratch dir.
    fn compile(&self, name: &str) -> PathBuf {
        let out = self.path(name);
        let src = Path::new(SCENARIOS).join(format!("{name}.c"));
        let result = Command::new("cc")
            .args([
                "-O2",
                "-Wall",
                "-Werror",
                "-o",
                path_str(&out),
                path_str(&src),
            ])
            .output()
            .expect("run cc");
        assert!(
            result.status.success(),
            "cc {}: {}",
            src.display(),
            String::from_utf8_lossy(&result.stderr)
        );
        out
    }

    /// The default policy with 127.0.0.0/8 no longer excluded from `webserver_egress`, so that a
    /// connect to an odd loopback port counts; checked with `monitor check-policy`.
    fn loopback_egress_policy(&self) -> PathBuf {
        let default: toml::Table = DEFAULT_POLICY.parse().expect("default policy is TOML");
        let kept: Vec<toml::Value> = default["rules"]["webserver_egress"]["excluded_networks"]
            .as_array()
            .expect("excluded_networks in the default policy")
            .iter()
            .filter(|n| n.as_str() != Some("127.0.0.0/8"))
            .cloned()
            .collect();
        let mut egress = toml::Table::new();
        egress.insert("excluded_networks".into(), toml::Value::Array(kept));
        let mut rules = toml::Table::new();
        rules.insert("webserver_egress".into(), toml::Value::Table(egress));
        let mut policy = toml::Table::new();
        policy.insert("rules".into(), toml::Value::Table(rules));
        let path = self.write("policy.toml", &policy.to_string());
        let out = Command::new(monitor_bin())
            .arg("check-policy")
            .arg(&path)
            .output()
            .expect("run monitor check-policy");
        assert!(
            out.status.success(),
            "check-policy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `cmd` run as `uid` (its group too, no supplementary groups) through util-linux's setpriv.
fn as_user(uid: u32, cmd: &mut Command) -> Command {
    let mut wrapped = Command::new("setpriv");
    wrapped
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    wrapped
}

/// Runs `cmd` as `uid` to completion; panics unless it succeeds; returns its stdout.
fn run_as(uid: u32, cmd: &mut Command) -> String {
    let out = as_user(uid, cmd)
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv");
    assert!(
        out.status.success(),
        "{cmd:?} as uid {uid}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A program left running while the test looks, in its own process group, killed on drop.
/// With `piped`, its stdin stays open (closing it ends the scenario programs) and its stdout is
/// read line by line.
struct Background {
    child: Child,
    what: &'static str,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<std::process::ChildStdout>>,
}

impl Background {
    fn start(what: &'static str, cmd: &mut Command, piped: bool) -> Self {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0).stderr(Stdio::inherit());
        if piped {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        } else {
            cmd.stdin(Stdio::null()).stdout(Stdio::null());
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        Background {
            child,
            what,
            stdin,
            stdout,
        }
    }

    /// The pid of the program itself: setpriv execs it in place.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_line(&mut self, want: &str) {
        let mut line = String::new();
        let stdout = self.stdout.as_mut().expect("piped stdout");
        let n = stdout.read_line(&mut line).expect("read stdout");
        assert!(
            n > 0 && line.trim_end() == want,
            "{} said {line:?} instead of {want:?} (exit status {:?})",
            self.what,
            self.child.try_wait()
        );
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        // Closing stdin ends the scenario programs; then the whole group goes.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            thread::sleep(Duration::from_millis(20));
        }
        let pgid = self.child.id() as libc::pid_t;
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Polls `f` every 20 ms for up to 10 s.
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn wait_port_open(port: u16) {
    poll(&format!("127.0.0.1:{port} to listen"), || {
        port_open(port).then_some(())
    });
}

fn wait_port_closed(port: u16) {
    poll(&format!("127.0.0.1:{port} to close"), || {
        (!port_open(port)).then_some(())
    });
}

/// The port `pid`'s only listening TCP socket is bound to, read with the daemon's own scan.
fn listening_port_of(pid: u32) -> u16 {
    poll(&format!("pid {pid} to listen"), || {
        let found: Vec<u16> = monitor::baseline::scan_listeners()
            .expect("scan /proc")
            .into_iter()
            .filter(|l| l.owners.contains(&pid))
            .map(|l| l.local.port())
            .collect();
        match found[..] {
            [port] => Some(port),
            _ => None,
        }
    })
}

/// GET / over a plain TCP connection to 127.0.0.1:`port`; returns the whole response.
fn http_get(port: u16) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(s, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send request");
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("read response");
    buf
}

fn canonical(p: &str) -> String {
    fs::canonicalize(p)
        .unwrap_or_else(|e| panic!("canonicalize {p}: {e}"))
        .to_str()
        .expect("UTF-8 path")
        .to_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display()))
}
