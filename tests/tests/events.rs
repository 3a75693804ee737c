//! Issue 2's end-to-end scenario: the daemon with `--events` must report, field for field, the
//! listeners, connects and execs this test makes, and a final status with the hooks and no drops.
//!
//! Run as root, one at a time: `cargo xtask test` (or
//! `MONITOR_BIN=$PWD/target/debug/monitor cargo test -p monitor-tests --test events -- --test-threads=1`).

use std::{
    ffi::CString,
    net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::Command,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use monitor_tests::{Monitor, privileged};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

/// What the daemon must say about this test process (it existed before the daemon started, so
/// this also checks the `/proc` seeding).
fn expect_self_process(v: &Value) {
    let p = &v["process"];
    assert_eq!(p["pid"], std::process::id(), "pid is the test's tgid: {v}");
    // SAFETY: getppid/getuid/geteuid/getgid have no preconditions.
    let (ppid, uid, euid, gid) = unsafe {
        (
            libc::getppid(),
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
        )
    };
    assert_eq!(p["ppid"], ppid, "{v}");
    assert_eq!(p["uid"], uid, "{v}");
    assert_eq!(p["euid"], euid, "{v}");
    assert_eq!(p["gid"], gid, "{v}");
    if uid == 0 {
        assert_eq!(p["user"], "root", "{v}");
    }
    // The hooks run in the calling thread, whose comm is the libtest thread name.
    let comm = std::fs::read_to_string("/proc/thread-self/comm").expect("own comm");
    assert_eq!(p["comm"], comm.trim_end_matches('\n'), "{v}");
    let exe = std::fs::read_link("/proc/self/exe").expect("own exe");
    assert_eq!(p["exe"], exe.to_str().expect("utf-8 exe path"), "{v}");
    let argv: Vec<String> = std::env::args().take(32).collect();
    assert_eq!(p["argv"], json!(argv), "{v}");
    assert!(p["cgroup_id"].is_u64(), "{v}");
    assert_eq!(
        v["ancestry"][0]["pid"], ppid,
        "ancestry starts with the parent: {v}"
    );
    expect_time(v);
}

/// `time` is RFC 3339 UTC with 9 fractional digits, and close to now.
fn expect_time(v: &Value) {
    let t = v["time"].as_str().unwrap_or_else(|| panic!("no time: {v}"));
    assert_eq!(t.len(), "2026-11-23T05:00:00.123456789Z".len(), "{t}");
    assert!(
        t.ends_with('Z') && t.as_bytes()[10] == b'T' && t.as_bytes()[19] == b'.',
        "{t}"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i128;
    let earliest = monitor::clock::format_rfc3339(now - 60_000_000_000);
    let latest = monitor::clock::format_rfc3339(now + 1_000_000_000);
    // Same fixed-width format: string order is time order.
    assert!(
        earliest.as_str() <= t && t <= latest.as_str(),
        "{t} is not within the last minute ({earliest} .. {latest})"
    );
}

fn expect_status(status: &Value) {
    assert_eq!(status["type"], "status");
    let hooks = &status["hooks"];
    for h in ["listen", "connect"] {
        let attached = hooks[h]["attached"].as_str().unwrap_or_default();
        assert!(!attached.is_empty(), "{h} not attached: {status}");
    }
    assert_eq!(
        hooks["exec"]["attached"], "tracepoint:sched:sched_process_exec",
        "{status}"
    );
    assert_eq!(status["drops"], 0, "{status}");
    for k in ["listen", "connect", "exec", "fork", "exit"] {
        assert!(status["events"][k].is_u64(), "events.{k}: {status}");
    }
    assert!(
        status["process_table"]["size"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
}

fn is_event(v: &Value, event: &str) -> bool {
    v["type"] == "event" && v["event"] == event
}

#[test]
fn listen_and_connect_records() {
    if !privileged("listen_and_connect_records") {
        return;
    }
    let mut m = Monitor::start(&["--events"]);
    let started = m.seen.last().cloned().expect("started record");
    expect_status(&started);

    let l4 = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let p4 = l4.local_addr().expect("addr").port();
    let l6 = TcpListener::bind("[::]:0").expect("bind [::]");
    let p6 = l6.local_addr().expect("addr").port();
    let c4 = TcpStream::connect(("127.0.0.1", p4)).expect("connect 127.0.0.1");
    let c4_local = c4.local_addr().expect("local addr").port();
    let mapped = SocketAddr::new(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x7f00, 1).into(), p6);
    let c6 = TcpStream::connect(mapped).expect("connect ::ffff:127.0.0.1");
    let c6_local = c6.local_addr().expect("local addr");
    assert_eq!(c6_local.ip().to_string(), "::ffff:127.0.0.1");

    let listen4 = m.wait_for("listen on 127.0.0.1", WAIT, |v| {
        is_event(v, "listen") && v["socket"]["local"]["port"] == p4
    });
    expect_self_process(&listen4);
    assert_eq!(
        listen4["socket"],
        json!({"protocol":"tcp","family":"ipv4","local":{"ip":"127.0.0.1","port":p4},"remote":null})
    );
    assert!(listen4.get("pre_existing").is_none(), "{listen4}");

    let listen6 = m.wait_for("listen on [::]", WAIT, |v| {
        is_event(v, "listen") && v["socket"]["local"]["port"] == p6
    });
    expect_self_process(&listen6);
    assert_eq!(
        listen6["socket"],
        json!({"protocol":"tcp","family":"ipv6","local":{"ip":"::","port":p6},"remote":null})
    );

    let connect4 = m.wait_for("connect to 127.0.0.1", WAIT, |v| {
        is_event(v, "connect") && v["socket"]["remote"]["port"] == p4
    });
    expect_self_process(&connect4);
    // The local port is the one connect(2) picked, as the client sees it.
    assert_eq!(
        connect4["socket"],
        json!({"protocol":"tcp","family":"ipv4",
               "local":{"ip":"127.0.0.1","port":c4_local},
               "remote":{"ip":"127.0.0.1","port":p4}}),
        "{connect4}"
    );

    let connect6 = m.wait_for("connect to ::ffff:127.0.0.1", WAIT, |v| {
        is_event(v, "connect") && v["socket"]["remote"]["port"] == p6
    });
    expect_self_process(&connect6);
    assert_eq!(
        connect6["socket"],
        json!({"protocol":"tcp","family":"ipv6",
               "local":{"ip":"127.0.0.1","port":c6_local.port()},
               "remote":{"ip":"127.0.0.1","port":p6},"mapped_ipv4":true}),
        "{connect6}"
    );

    // The accepted ends are not connects, and each listener was reported once.
    let extra = m.drain_for(Duration::from_millis(300));
    let all: Vec<&Value> = m.seen.iter().chain(extra.iter()).collect();
    for port in [p4, p6] {
        let n = all
            .iter()
            .filter(|v| is_event(v, "listen") && v["socket"]["local"]["port"] == port)
            .count();
        assert_eq!(n, 1, "listen records for port {port}");
    }
    drop((c4, c6, l4, l6));

    let status = m.stop();
    expect_status(&status);
    assert!(
        status["events"]["listen"].as_u64().unwrap_or(0) >= 2,
        "{status}"
    );
    assert!(
        status["events"]["connect"].as_u64().unwrap_or(0) >= 2,
        "{status}"
    );
}

/// UDP destinations with `--events` (every process's): a sendto and a connect, IPv4, IPv6 and
/// IPv4-mapped, each reported once per process and destination as a connect with protocol
/// `udp`; port 53 never.
#[test]
fn udp_sendto_and_connect_records() {
    if !privileged("udp_sendto_and_connect_records") {
        return;
    }
    let mut m = Monitor::start(&["--events"]);
    let started = m.seen.last().cloned().expect("started record");
    assert!(
        started["hooks"]["udp"]["attached"].as_str().is_some_and(
            |h| h.starts_with("tracepoint:syscalls:sys_exit_connect,sys_enter_connect")
        ),
        "udp attached: {started}"
    );
    // Receivers, so that the ports are free and nothing answers with port-unreachable.
    let r4 = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let p4 = r4.local_addr().expect("addr").port();
    let r6 = UdpSocket::bind("[::1]:0").expect("bind ::1");
    let p6 = r6.local_addr().expect("addr").port();

    let s4 = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    let s4_port = s4.local_addr().expect("addr").port();
    for _ in 0..2 {
        s4.send_to(b"x", ("127.0.0.1", p4))
            .expect("sendto 127.0.0.1");
    }
    // DNS is never reported (nothing may listen there: the datagram is just dropped).
    let _ = s4.send_to(b"x", ("127.0.0.1", 53));

    let s6 = UdpSocket::bind("[::1]:0").expect("bind sender");
    let s6_port = s6.local_addr().expect("addr").port();
    s6.connect(("::1", p6)).expect("connect ::1");
    s6.send(b"y").expect("send on the connected socket");

    let s_mapped = UdpSocket::bind("[::]:0").expect("bind [::]");
    let mapped_port = s_mapped.local_addr().expect("addr").port();
    let mapped = SocketAddr::new(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x7f00, 1).into(), p4);
    s_mapped
        .send_to(b"z", mapped)
        .expect("sendto ::ffff:127.0.0.1");

    let udp_to = |v: &Value, port: u16| {
        is_event(v, "connect")
            && v["socket"]["protocol"] == "udp"
            && v["process"]["pid"] == std::process::id()
            && v["socket"]["remote"]["port"] == port
    };
    let sent4 = m.wait_for("UDP sendto 127.0.0.1", WAIT, |v| {
        udp_to(v, p4) && v["socket"]["family"] == "ipv4"
    });
    expect_self_process(&sent4);
    assert_eq!(
        sent4["socket"],
        json!({"protocol":"udp","family":"ipv4",
               "local":{"ip":"127.0.0.1","port":s4_port},
               "remote":{"ip":"127.0.0.1","port":p4}}),
        "{sent4}"
    );
    let connect6 = m.wait_for("UDP connect ::1", WAIT, |v| udp_to(v, p6));
    expect_self_process(&connect6);
    assert_eq!(
        connect6["socket"],
        json!({"protocol":"udp","family":"ipv6",
               "local":{"ip":"::1","port":s6_port},
               "remote":{"ip":"::1","port":p6}}),
        "{connect6}"
    );
    // Both name the whole 5-tuple (the senders were bound first, the connect's record waited for
    // its return): their flows have a Community ID, the one the daemon's function gives them.
    for record in [&sent4, &connect6] {
        let socket: monitor::record::SocketInfo =
            serde_json::from_value(record["socket"].clone()).expect("socket");
        let id = monitor::enrich::community_id::of(0, &socket).expect("a whole 5-tuple");
        assert_eq!(record["community_id"], id, "{record}");
    }
    let sent_mapped = m.wait_for("UDP sendto ::ffff:127.0.0.1", WAIT, |v| {
        udp_to(v, p4) && v["socket"]["family"] == "ipv6"
    });
    assert_eq!(
        sent_mapped["socket"],
        json!({"protocol":"udp","family":"ipv6",
               "local":{"ip":"::","port":mapped_port},
               "remote":{"ip":"127.0.0.1","port":p4},"mapped_ipv4":true}),
        "{sent_mapped}"
    );
    // An unconnected socket bound to `::` has no source address of its own (it is chosen per
    // datagram): no Community ID rather than a wrong one.
    assert!(sent_mapped.get("community_id").is_none(), "{sent_mapped}");

    // A marker destination last: once its record is here, every earlier send's would be too.
    let marker = UdpSocket::bind("127.0.0.1:0").expect("bind marker receiver");
    let marker_port = marker.local_addr().expect("addr").port();
    s4.send_to(b"m", ("127.0.0.1", marker_port))
        .expect("sendto marker");
    m.wait_for("UDP marker", WAIT, |v| udp_to(v, marker_port));
    let count = |m: &Monitor, port: u16, family: &str| {
        m.seen
            .iter()
            .filter(|v| udp_to(v, port) && v["socket"]["family"] == family)
            .count()
    };
    assert_eq!(count(&m, p4, "ipv4"), 1, "one record per destination");
    assert_eq!(
        count(&m, p4, "ipv6"),
        1,
        "the mapped destination is its own"
    );
    assert_eq!(
        count(&m, p6, "ipv6"),
        1,
        "the connected send is not reported"
    );
    assert_eq!(count(&m, 53, "ipv4"), 0, "DNS is not reported");
    drop((r4, r6, s4, s6, s_mapped, marker));

    let status = m.stop();
    expect_status(&status);
    assert!(
        status["events"]["connect"].as_u64().unwrap_or(0) >= 4,
        "{status}"
    );
}

/// A marker argument that identifies this run's records.
fn marker(what: &str) -> String {
    let ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("monitor-test-{what}-{ns}")
}

fn expect_exec_of_true(v: &Value, pid: u32, argv: &[&str], filename: &str) {
    let p = &v["process"];
    assert_eq!(p["pid"], pid, "pid is the child's: {v}");
    assert_eq!(p["ppid"], std::process::id(), "{v}");
    assert_eq!(p["comm"], "true", "{v}");
    assert_eq!(p["exe"], "/usr/bin/true", "{v}");
    assert_eq!(p["argv"], json!(argv), "{v}");
    assert!(p.get("argv_truncated").is_none(), "{v}");
    // SAFETY: getuid has no preconditions.
    assert_eq!(p["uid"], unsafe { libc::getuid() }, "{v}");
    assert_eq!(v["filename"], filename, "{v}");
    assert_eq!(v["socket"], Value::Null, "{v}");
    assert_eq!(
        v["ancestry"][0]["pid"],
        std::process::id(),
        "parent is this test: {v}"
    );
    let me = std::fs::read_link("/proc/self/exe").expect("own exe");
    assert_eq!(v["ancestry"][0]["exe"], me.to_str().expect("utf-8"), "{v}");
    expect_time(v);
}

/// fork + fexecve(2) (glibc: execveat(fd, "", ..., `AT_EMPTY_PATH`)) of /usr/bin/true; returns the
/// child's pid and the fd number it exec'd through.
fn fexecve_true(args: &[&str]) -> (u32, i32) {
    let file = std::fs::File::open("/usr/bin/true").expect("open /usr/bin/true");
    let fd = OwnedFd::from(file);
    // Everything the child needs is allocated before fork: after fork in a multi-threaded
    // process only async-signal-safe calls are allowed.
    let cargs: Vec<CString> = args
        .iter()
        .map(|a| CString::new(*a).expect("no NUL"))
        .collect();
    let mut argv: Vec<*const libc::c_char> = cargs.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    // SAFETY: the child only calls fexecve and _exit, both async-signal-safe, on memory prepared
    // above; the parent waits for it below.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        unsafe {
            libc::fexecve(fd.as_raw_fd(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &raw mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "fexecve child failed (status {status})"
    );
    (pid as u32, fd.as_raw_fd())
}

#[test]
fn exec_records() {
    if !privileged("exec_records") {
        return;
    }
    let mut m = Monitor::start(&["--events"]);

    // execve(2) through std (posix_spawn or fork + execve: either way the pid execs).
    let mark1 = marker("execve");
    let mut child = Command::new("/usr/bin/true")
        .arg(&mark1)
        .spawn()
        .expect("spawn /usr/bin/true");
    let pid1 = child.id();
    assert!(child.wait().expect("wait").success());

    let mark2 = marker("fexecve");
    let (pid2, fd) = fexecve_true(&["true", &mark2]);

    let exec1 = m.wait_for("exec of /usr/bin/true", WAIT, |v| {
        is_event(v, "exec") && v["process"]["argv"][1] == mark1.as_str()
    });
    expect_exec_of_true(&exec1, pid1, &["/usr/bin/true", &mark1], "/usr/bin/true");

    let exec2 = m.wait_for("fexecve of /usr/bin/true", WAIT, |v| {
        is_event(v, "exec") && v["process"]["argv"][1] == mark2.as_str()
    });
    // The kernel names an fd exec `/dev/fd/<fd>`; exe is still the real file.
    expect_exec_of_true(&exec2, pid2, &["true", &mark2], &format!("/dev/fd/{fd}"));

    // Both exits are reported, with the program that ran and its status.
    for (pid, mark) in [(pid1, &mark1), (pid2, &mark2)] {
        let exit = m.wait_for("exit of /usr/bin/true", WAIT, |v| {
            is_event(v, "exit") && v["process"]["pid"] == pid
        });
        assert_eq!(exit["exit_code"], 0, "{exit}");
        assert_eq!(exit["process"]["exe"], "/usr/bin/true", "{exit}");
        assert_eq!(exit["process"]["argv"][1], mark.as_str(), "{exit}");
        assert!(exit.get("filename").is_none(), "{exit}");
    }

    let status = m.stop();
    expect_status(&status);
    assert!(
        status["events"]["exec"].as_u64().unwrap_or(0) >= 2,
        "{status}"
    );
    assert!(
        status["events"]["exit"].as_u64().unwrap_or(0) >= 2,
        "{status}"
    );
    assert!(
        status["events"]["fork"].as_u64().unwrap_or(0) >= 2,
        "{status}"
    );
}

#[test]
fn without_events_flag_only_status() {
    if !privileged("without_events_flag_only_status") {
        return;
    }
    let mut m = Monitor::start(&["--status-interval", "1"]);
    let mark = marker("quiet");
    assert!(
        Command::new("/usr/bin/true")
            .arg(&mark)
            .status()
            .expect("run true")
            .success()
    );
    let running = m.wait_for("a running status record", Duration::from_secs(5), |v| {
        v["type"] == "status" && v["status"] == "running"
    });
    expect_status(&running);
    let got = m.drain_for(Duration::from_millis(300));
    assert!(
        m.seen
            .iter()
            .chain(got.iter())
            .all(|v| v["type"] != "event"),
        "no event records without --events"
    );
    let status = m.stop();
    assert!(
        status["events"]["exec"].as_u64().unwrap_or(0) >= 1,
        "exec still counted: {status}"
    );
}

#[test]
fn pre_existing_listener_and_lineage() {
    if !privileged("pre_existing_listener_and_lineage") {
        return;
    }
    // Listening before the daemon starts: reported by the start-up scan, with the identity the
    // daemon read from /proc.
    let old = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = old.local_addr().expect("addr").port();
    let mut m = Monitor::start(&["--events"]);
    let rec = m.wait_for("pre-existing listener", WAIT, |v| {
        is_event(v, "listen") && v["socket"]["local"]["port"] == port
    });
    assert_eq!(rec["pre_existing"], true, "{rec}");
    assert_eq!(
        rec["socket"],
        json!({"protocol":"tcp","family":"ipv4","local":{"ip":"127.0.0.1","port":port},"remote":null})
    );
    let p = &rec["process"];
    assert_eq!(p["pid"], std::process::id(), "{rec}");
    let exe = std::fs::read_link("/proc/self/exe").expect("own exe");
    assert_eq!(p["exe"], exe.to_str().expect("utf-8"), "{rec}");
    let argv: Vec<String> = std::env::args().take(32).collect();
    assert_eq!(p["argv"], json!(argv), "{rec}");
    // SAFETY: getppid has no preconditions.
    assert_eq!(
        rec["ancestry"][0]["pid"],
        unsafe { libc::getppid() },
        "{rec}"
    );
    assert!(
        started_index(&m) < m.seen.iter().position(|v| v == &rec).expect("seen"),
        "the started record comes first, then the pre-existing listeners"
    );

    // A shell that forks a child: the child's exec names the shell and this test as ancestors.
    let mark = marker("lineage");
    let script = format!("/usr/bin/true {mark}; exit 0");
    let mut sh = Command::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .expect("spawn sh");
    let sh_pid = sh.id();
    assert!(sh.wait().expect("wait sh").success());
    let exec = m.wait_for("exec of true under sh", WAIT, |v| {
        is_event(v, "exec") && v["process"]["argv"][1] == mark.as_str()
    });
    assert_eq!(exec["process"]["ppid"], sh_pid, "{exec}");
    assert_eq!(exec["process"]["exe"], "/usr/bin/true", "{exec}");
    let sh_exe = std::fs::canonicalize("/bin/sh").expect("resolve /bin/sh");
    assert_eq!(
        exec["ancestry"][0],
        json!({"pid":sh_pid,"exe":sh_exe.to_str().expect("utf-8"),"comm":"sh",
               "argv":["/bin/sh","-c",script]}),
        "{exec}"
    );
    assert_eq!(exec["ancestry"][1]["pid"], std::process::id(), "{exec}");
    drop(old);
    expect_status(&m.stop());
}

fn started_index(m: &Monitor) -> usize {
    m.seen
        .iter()
        .position(|v| v["type"] == "status" && v["status"] == "started")
        .expect("started record")
}

/// A network namespace reached through a veth pair (host 10.200.0.1/30, namespace 10.200.0.2/30)
/// that never answers: a blackhole route inside drops its RSTs and SYN-ACKs, so a connect to it
/// stays in `SYN_SENT` and retransmits. All traffic stays between this machine and the namespace.
struct SilentPeer;

impl SilentPeer {
    const NS: &str = "mon-silent";
    const HOST_IF: &str = "mon-silent0";
    const PEER: &str = "10.200.0.2";

    fn create() -> Self {
        // A namespace left behind by an aborted run would make `ip netns add` fail.
        drop(SilentPeer);
        let ns = Self::NS;
        let guard = SilentPeer;
        for args in [
            vec!["netns", "add", ns],
            vec![
                "link",
                "add",
                Self::HOST_IF,
                "type",
                "veth",
                "peer",
                "name",
                "mon-silent1",
            ],
            vec!["link", "set", "mon-silent1", "netns", ns],
            vec!["addr", "add", "10.200.0.1/30", "dev", Self::HOST_IF],
            vec!["link", "set", Self::HOST_IF, "up"],
            vec![
                "-n",
                ns,
                "addr",
                "add",
                "10.200.0.2/30",
                "dev",
                "mon-silent1",
            ],
            vec!["-n", ns, "link", "set", "mon-silent1", "up"],
            vec!["-n", ns, "route", "add", "blackhole", "10.200.0.1/32"],
        ] {
            let status = Command::new("ip")
                .args(&args)
                .status()
                .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
            assert!(status.success(), "ip {args:?}: {status}");
        }
        guard
    }
}

impl Drop for SilentPeer {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth end, and with it the host end.
        let _ = Command::new("ip")
            .args(["netns", "del", Self::NS])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", Self::HOST_IF])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A blocking connect(2) to `addr:port` with `SO_SNDTIMEO` = `timeout` (the kernel's bound on a
/// blocking connect): returns the local port the kernel picked and when connect(2) returned.
fn blocking_connect(addr: std::net::Ipv4Addr, port: u16, timeout: Duration) -> (u16, Instant) {
    // SAFETY: plain socket syscalls on a descriptor this function owns; every struct passed is
    // fully initialised and its length given.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let fd = OwnedFd::from_raw_fd(fd);
        let tv = libc::timeval {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        let rc = libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_SNDTIMEO: {}", std::io::Error::last_os_error());
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_port = port.to_be();
        sa.sin_addr.s_addr = u32::from(addr).to_be();
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = libc::connect(fd.as_raw_fd(), (&raw const sa).cast(), len);
        let returned = Instant::now();
        // A silent peer: the SYN retries outlast the timeout, which ends the call with EINPROGRESS.
        let err = std::io::Error::last_os_error();
        assert!(
            rc != 0 && err.raw_os_error() == Some(libc::EINPROGRESS),
            "connect to a silent peer returned {rc} ({err}), expected a timeout"
        );
        let mut local: libc::sockaddr_in = std::mem::zeroed();
        let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = libc::getsockname(fd.as_raw_fd(), (&raw mut local).cast(), &raw mut len);
        assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
        (u16::from_be(local.sin_port), returned)
    }
}

/// A blocking connect(2) to a peer that never answers is reported while the call is still
/// waiting (at the first SYN retransmission, about one second in), not when it gives up, and with
/// the source port the kernel picked. A web shell calling a dead C2 must not stay hidden for the
/// two minutes of SYN retries.
#[test]
fn blocking_connect_to_silent_peer_is_reported_before_it_returns() {
    if !privileged("blocking_connect_to_silent_peer_is_reported_before_it_returns") {
        return;
    }
    let _peer = SilentPeer::create();
    let mut m = Monitor::start(&["--events"]);
    let peer: std::net::Ipv4Addr = SilentPeer::PEER.parse().expect("peer address");
    // The discard port: nothing listens there, and nothing would answer anyway.
    let port = 9;
    let started = Instant::now();
    let client = std::thread::spawn(move || blocking_connect(peer, port, Duration::from_secs(4)));
    let rec = m.wait_for("connect to the silent peer", Duration::from_secs(2), |v| {
        is_event(v, "connect")
            && v["socket"]["remote"] == json!({"ip": SilentPeer::PEER, "port": port})
    });
    let arrived = Instant::now();
    assert!(
        !client.is_finished(),
        "the record must arrive while connect(2) still waits: {rec}"
    );
    let (local_port, returned) = client.join().expect("client thread");
    assert!(
        arrived < returned,
        "record after {:?}, connect(2) returned after {:?}",
        arrived - started,
        returned - started
    );
    assert_eq!(rec["process"]["pid"], std::process::id(), "{rec}");
    assert_eq!(
        rec["socket"],
        json!({"protocol":"tcp","family":"ipv4",
               "local":{"ip":"10.200.0.1","port":local_port},
               "remote":{"ip":SilentPeer::PEER,"port":port}}),
        "{rec}"
    );
    // connect(2) has returned: a second record (from sys_exit_connect) would be here by now.
    m.drain_for(Duration::from_millis(300));
    let n = m
        .seen
        .iter()
        .filter(|v| is_event(v, "connect") && v["socket"]["remote"]["ip"] == SilentPeer::PEER)
        .count();
    assert_eq!(n, 1, "one record per connect");
    expect_status(&m.stop());
}

/// A new IPv4 TCP socket, optionally with `SO_REUSEADDR` (panics on failure: test set-up).
fn tcp4_socket(reuse_addr: bool) -> OwnedFd {
    // SAFETY: plain syscall; the fd is owned from here on.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
    assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: fd was just returned by socket(2) and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if reuse_addr {
        let one: libc::c_int = 1;
        // SAFETY: `one` outlives the call and the length matches its type.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_REUSEADDR: {}", std::io::Error::last_os_error());
    }
    fd
}

/// The local IPv4 port of `fd` (getsockname).
fn local_port4(fd: &OwnedFd) -> u16 {
    // SAFETY: sockaddr_in is plain integers; zero is valid.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: sa and len are valid for writes of the given size.
    let rc = unsafe { libc::getsockname(fd.as_raw_fd(), (&raw mut sa).cast(), &raw mut len) };
    assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
    u16::from_be(sa.sin_port)
}

/// Binds `fd` to 127.0.0.1:`port` (0: any port).
fn bind_loopback4(fd: &OwnedFd, port: u16) -> std::io::Result<()> {
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sa is a valid sockaddr_in for the duration of the call.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const sa).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn listen_fd(fd: &OwnedFd) -> std::io::Result<()> {
    // SAFETY: plain syscall on a socket we own.
    if unsafe { libc::listen(fd.as_raw_fd(), 8) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn own_listens_on(m: &Monitor, port: u16) -> Vec<Value> {
    m.seen
        .iter()
        .filter(|v| {
            is_event(v, "listen")
                && v["process"]["pid"] == std::process::id()
                && v["socket"]["local"]["port"] == port
        })
        .cloned()
        .collect()
}

/// listen(2) on a socket that was never bound picks its port in `inet_csk_listen_start()`, after
/// the `TCP_LISTEN` state change: the record must carry that port (as getsockname sees it), not 0.
#[test]
fn autobind_listen_reports_the_bound_port() {
    if !privileged("autobind_listen_reports_the_bound_port") {
        return;
    }
    let mut m = Monitor::start(&["--events"]);
    let fd = tcp4_socket(false);
    listen_fd(&fd).expect("listen without bind");
    let port = local_port4(&fd);
    assert_ne!(port, 0, "autobind picked a port");
    let rec = m.wait_for("autobind listen", WAIT, |v| {
        is_event(v, "listen")
            && v["process"]["pid"] == std::process::id()
            && v["socket"]["local"]["port"] == port
    });
    assert_eq!(
        rec["socket"],
        json!({"protocol":"tcp","family":"ipv4","local":{"ip":"0.0.0.0","port":port},"remote":null}),
        "{rec}"
    );
    // A marker listen after it: everything about the first one has been read by then.
    let marker = TcpListener::bind("127.0.0.1:0").expect("marker listener");
    let marker_port = marker.local_addr().expect("addr").port();
    m.wait_for("marker listen", WAIT, |v| {
        is_event(v, "listen") && v["socket"]["local"]["port"] == marker_port
    });
    assert_eq!(own_listens_on(&m, port).len(), 1, "one record per listen");
    assert!(
        own_listens_on(&m, 0).is_empty(),
        "no listen record with port 0: {:?}",
        own_listens_on(&m, 0)
    );
    expect_status(&m.stop());
}

/// Two `SO_REUSEADDR` sockets (no `SO_REUSEPORT`) may bind the same port, but only the first can
/// listen on it: the second listen(2) fails with EADDRINUSE in `get_port()`, after the socket
/// already passed through `TCP_LISTEN`. That failed listen must not be reported (a false alert
/// for a port nobody listens on).
#[test]
fn failed_listen_is_not_reported() {
    if !privileged("failed_listen_is_not_reported") {
        return;
    }
    let mut m = Monitor::start(&["--events"]);
    let first = tcp4_socket(true);
    bind_loopback4(&first, 0).expect("bind first");
    let port = local_port4(&first);
    let second = tcp4_socket(true);
    bind_loopback4(&second, port).expect("SO_REUSEADDR lets a second socket bind the port");
    listen_fd(&first).expect("first listen");
    let err = listen_fd(&second).expect_err("second listen on the same port must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EADDRINUSE), "{err}");
    // A successful listen after the failed one: once its record is here, any record of the
    // failed listen would be too (one ring buffer, records in order).
    let marker = TcpListener::bind("127.0.0.1:0").expect("marker listener");
    let marker_port = marker.local_addr().expect("addr").port();
    m.wait_for("marker listen", WAIT, |v| {
        is_event(v, "listen") && v["socket"]["local"]["port"] == marker_port
    });
    let listens = own_listens_on(&m, port);
    assert_eq!(
        listens.len(),
        1,
        "only the first, successful listen on {port} is reported: {listens:?}"
    );
    let status = m.stop();
    expect_status(&status);
    assert!(
        status["hooks"]["listen"]["attached"]
            .as_str()
            .is_some_and(|h| h.ends_with("+syscalls:sys_exit_listen")),
        "listen attached through the bracketed tracepoint: {status}"
    );
}
