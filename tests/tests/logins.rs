//! Privileged end-to-end scenarios of the login half (issue 11), with the real OpenSSH server from
//! Debian (tests/src/sshd.rs): sshd listens on a test port of this host, clients connect from
//! network namespaces the test creates (their own addresses in 10.77.0.0/16 and `fd77::/16`,
//! nothing else), and the offline lists are files in the scenario's scratch directory.
//!
//! - `ssh_login_from_a_tor_exit_then_a_malicious_address`: a login from an address in the Tor list
//!   raises `ssh_login_tor` within a second, with the user, the address, the method and the
//!   command; the list rewritten (the address now in the reputation file as malicious) is re-read
//!   without a restart and the next login raises `ssh_login_malicious_ip`; a connection from this
//!   host to that address raises `egress_listed_ip`.
//! - `every_kind_of_ssh_session_is_a_login_and_trusted_networks_never_alert`: from a trusted
//!   network (also in the Tor list), a command, a pty shell, sftp, `-N`, a password login, root's
//!   command and root's `-N` are each one `login` event, none raises an alert; a wrong key is no
//!   login.
//!
//! Run: `cargo build -p monitor && MONITOR_BIN=$PWD/target/debug/monitor \
//!       cargo test -p monitor-tests --test logins -- --test-threads=1`

use std::{
    net::{IpAddr, SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use monitor_tests::{
    Monitor, QUIET, privileged, record_only,
    sshd::{Auth, Client, Key, NetNs, Scratch, Sshd, TestUser},
};
use serde_json::Value;

/// How long an expected record may take (the daemon should need a fraction of a second).
const TIMEOUT: Duration = Duration::from_secs(10);
/// The events the replay fixtures keep: what the login and list rules judge.
const RECORDED: &[&str] = &["accept", "login", "connect"];
/// The alert schema every alert is validated against.
const SCHEMA: &str = include_str!("../../docs/alert.schema.json");

fn is_alert(v: &Value, rule: &str) -> bool {
    v["type"] == "alert" && v["rule"] == rule
}

fn is_login_from(v: &Value, ip: IpAddr) -> bool {
    v["type"] == "event" && v["event"] == "login" && v["login"]["remote"]["ip"] == ip.to_string()
}

fn validate(alert: &Value) {
    let schema: Value = serde_json::from_str(SCHEMA).expect("the schema is JSON");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(alert)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{alert}\n{errors:#?}");
}

/// The policy of a scenario: the default one, with the Tor list, the reputation file and the
/// trusted networks given.
fn policy(scratch: &Scratch, trusted: &[String]) -> std::path::PathBuf {
    let trusted = trusted
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    scratch.write(
        "policy.toml",
        &format!(
            "[enrichment]\ntor_exits = \"{}\"\nreputation = \"{}\"\ntrusted_networks = [{trusted}]\n",
            scratch.path("tor-exits.txt").display(),
            scratch.path("reputation.csv").display(),
        ),
    )
}

/// Replaces a list file the way a downloader does: a new file renamed over the old one.
fn replace(scratch: &Scratch, name: &str, contents: &str) {
    let tmp = scratch.write(&format!("{name}.new"), contents);
    std::fs::rename(&tmp, scratch.path(name)).expect("rename the new list over the old one");
}

/// The records that arrived after `from` (an index into `m.seen`).
fn since(m: &Monitor, from: usize) -> &[Value] {
    &m.seen[from.min(m.seen.len())..]
}

/// Waits for the `login` event from `ip` that arrives after `from`.
fn next_login(m: &mut Monitor, from: usize, ip: IpAddr, what: &str) -> Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = since(m, from).iter().find(|v| is_login_from(v, ip)) {
            return v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {what} within {TIMEOUT:?}; records since:\n{}",
            since(m, from)
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
        m.drain_for(Duration::from_millis(50));
    }
}

fn ms_between(earlier: &Value, later: &Value) -> i128 {
    let t = |v: &Value| {
        v["time"]
            .as_str()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .unwrap_or_else(|| panic!("no time in {v}"))
    };
    i128::from(t(later).as_millisecond()) - i128::from(t(earlier).as_millisecond())
}

#[test]
fn ssh_login_from_a_tor_exit_then_a_malicious_address() {
    if !privileged("ssh_login_from_a_tor_exit_then_a_malicious_address") {
        return;
    }
    let scratch = Scratch::new("logins-tor");
    let user = TestUser::ensure();
    let exit_node = NetNs::create();
    let key = Key::generate(scratch.dir(), "user_key");
    replace(
        &scratch,
        "tor-exits.txt",
        &format!(
            "# torbulkexitlist, as check.torproject.org serves it\n{}\n{}\n",
            exit_node.ns_v4, exit_node.ns_v6
        ),
    );
    replace(&scratch, "reputation.csv", "ip,classification,name,tags\n");
    let policy = policy(&scratch, &[]);

    // The monitor first: it learns sshd's executable at its exec.
    let mut m = Monitor::start(&["--events", "--policy", policy.to_str().expect("utf-8")]);
    let daemon = m.pid();
    let sshd = Sshd::start(scratch.dir(), &[&exit_node]);
    sshd.authorize(&user.name, &key);
    let client = Client::new(&exit_node, &sshd, &user.name, Auth::Key(key.clone()));
    let log = || format!("sshd log:\n{}", sshd.log());
    let source = IpAddr::from(exit_node.ns_v4);

    let from = m.seen.len();
    let sent = Instant::now();
    client.run("id").assert_ok("ssh host id", &log());
    let alert = m.wait_for("ssh_login_tor", TIMEOUT, |v| {
        is_alert(v, "ssh_login_tor") && v["login"]["remote"]["ip"] == source.to_string()
    });
    assert!(
        sent.elapsed() < TIMEOUT,
        "the alert took {:?}",
        sent.elapsed()
    );
    validate(&alert);
    assert_eq!(alert["severity"], "CRITICAL", "{alert}");
    assert_eq!(
        alert["title"],
        format!("SSH Connection Established from TOR Exit Node ({source})"),
        "{alert}"
    );
    assert_eq!(
        alert["dedup"],
        format!("ssh_login_tor:{}:{source}", user.name)
    );
    let login = &alert["login"];
    assert_eq!(login["user"], user.name, "{alert}");
    assert_eq!(login["uid"], user.uid, "{alert}");
    assert_eq!(login["method"], "publickey", "{alert}");
    assert_eq!(
        login["command"],
        serde_json::json!(["bash", "-c", "id"]),
        "{alert}"
    );
    assert_eq!(
        login["local"]["ip"],
        exit_node.host_v4.to_string(),
        "{alert}"
    );
    assert_eq!(login["local"]["port"], sshd.port(), "{alert}");
    assert_eq!(login["sshd"]["listener"], sshd.pid(), "{alert}");
    assert_eq!(alert["socket"]["remote"], login["remote"], "{alert}");
    assert_eq!(alert["enrichment"]["tor_exit"], true, "{alert}");
    assert_eq!(alert["enrichment"]["trusted"], false, "{alert}");
    // Within a second of the connection, by the kernel's own clock: the accept and the login.
    let accept = since(&m, from)
        .iter()
        .find(|v| {
            v["type"] == "event"
                && v["event"] == "accept"
                && v["socket"]["remote"] == login["remote"]
        })
        .cloned()
        .unwrap_or_else(|| panic!("no accept event for the login's connection"));
    assert_eq!(accept["process"]["pid"], sshd.pid(), "{accept}");
    assert_eq!(accept["enrichment"]["tor_exit"], true, "{accept}");
    let login_event = next_login(&mut m, from, source, "the login event");
    let ms = ms_between(&accept, &login_event);
    assert!(
        (0..1000).contains(&ms),
        "login {ms} ms after the accept:\n{accept}\n{login_event}"
    );
    // The same exit over IPv6: its own alert (another address), the 4-tuple read from the socket.
    let source6 = IpAddr::from(exit_node.ns_v6);
    client
        .clone()
        .over_v6()
        .run("id")
        .assert_ok("ssh over IPv6", &log());
    let alert6 = m.wait_for("ssh_login_tor over IPv6", TIMEOUT, |v| {
        is_alert(v, "ssh_login_tor") && v["login"]["remote"]["ip"] == source6.to_string()
    });
    validate(&alert6);
    assert_eq!(alert6["socket"]["family"], "ipv6", "{alert6}");
    assert_eq!(
        alert6["login"]["local"]["ip"],
        exit_node.host_v6.to_string(),
        "{alert6}"
    );
    // Nothing else calls it malicious or listed.
    for rule in ["ssh_login_malicious_ip", "ssh_login_listed"] {
        assert!(
            !since(&m, from).iter().any(|v| is_alert(v, rule)),
            "{rule} raised for a Tor exit"
        );
    }

    // The lists change under the running daemon: the address leaves the Tor list and enters the
    // reputation file as malicious.
    let from = m.seen.len();
    replace(&scratch, "tor-exits.txt", "# no exits today\n");
    replace(
        &scratch,
        "reputation.csv",
        &format!("ip,classification,name,tags\n{source}/32,malicious,TestBot,c2|ssh-bruteforce\n"),
    );
    let reloaded = m.wait_for("a reloaded status record", TIMEOUT, |v| {
        v["type"] == "status"
            && v["status"] == "reloaded"
            && v["lists"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|f| f["source"] == "reputation" && f["entries"] == 1)
            })
    });
    assert!(
        reloaded["lists"].as_array().is_some_and(|l| l
            .iter()
            .any(|f| f["source"] == "tor_exits" && f["entries"] == 0)),
        "{reloaded}"
    );
    let from_reload = m.seen.len();
    client
        .run("echo second")
        .assert_ok("ssh host 'echo second'", &log());
    let alert = m.wait_for("ssh_login_malicious_ip", TIMEOUT, |v| {
        is_alert(v, "ssh_login_malicious_ip")
    });
    validate(&alert);
    assert_eq!(alert["severity"], "HIGH", "{alert}");
    assert_eq!(
        alert["title"],
        format!("SSH Connection Established from Malicious IP {source}"),
        "{alert}"
    );
    assert_eq!(
        alert["enrichment"]["reputation"],
        serde_json::json!({"classification": "malicious", "name": "TestBot", "tags": ["c2", "ssh-bruteforce"]}),
        "{alert}"
    );
    assert_eq!(alert["enrichment"]["tor_exit"], false, "{alert}");
    next_login(&mut m, from_reload, source, "the second login");
    assert!(
        !since(&m, from).iter().any(|v| is_alert(v, "ssh_login_tor")),
        "ssh_login_tor after the address left the Tor list"
    );

    // A broken download: the reputation file turns into garbage. The last good copy stays, and
    // a status record says why.
    replace(
        &scratch,
        "reputation.csv",
        "<html>404 Not Found</html>\n\x00\x01\n",
    );
    let kept = m.wait_for("the refused reload", TIMEOUT, |v| {
        v["type"] == "status"
            && v["status"] == "reloaded"
            && v["lists"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|f| f["source"] == "reputation" && f["last"] == "kept_last_good")
            })
    });
    let reputation = kept["lists"]
        .as_array()
        .and_then(|l| l.iter().find(|f| f["source"] == "reputation"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(reputation["entries"], 1, "{kept}");
    assert!(
        reputation["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{kept}"
    );

    // A process of this host calling out to the listed address (a C2 callback).
    let listener = in_namespace_listener(&exit_node, 24_301);
    let target = SocketAddr::new(source, 24_301);
    let stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {target}: {e}"));
    let me = std::process::id();
    let alert = m.wait_for("egress_listed_ip", TIMEOUT, |v| {
        is_alert(v, "egress_listed_ip") && v["process"]["pid"] == me
    });
    validate(&alert);
    assert_eq!(
        alert["title"],
        format!("Connection to Malicious Address {target}"),
        "{alert}"
    );
    assert_eq!(alert["severity"], "HIGH", "{alert}");
    drop(stream);
    drop(listener);

    drop(sshd);
    m.stop();
    record_only(daemon, "ssh_login_tor_then_malicious", RECORDED);
}

#[test]
fn every_kind_of_ssh_session_is_a_login_and_trusted_networks_never_alert() {
    if !privileged("every_kind_of_ssh_session_is_a_login_and_trusted_networks_never_alert") {
        return;
    }
    let scratch = Scratch::new("logins-trusted");
    let user = TestUser::ensure();
    let admin = NetNs::create();
    let key = Key::generate(scratch.dir(), "user_key");
    let root_key = Key::generate(scratch.dir(), "root_key");
    let wrong_key = Key::generate(scratch.dir(), "wrong_key");
    // The admins' network is trusted, even though it is in the Tor list: trust wins.
    replace(&scratch, "tor-exits.txt", &format!("{}\n", admin.ns_v4));
    replace(&scratch, "reputation.csv", "");
    let trusted = format!("{}/30", mask30(admin.ns_v4));
    let policy = policy(&scratch, &[trusted]);

    // sshd first: the monitor finds it running at start-up.
    let sshd = Sshd::start(scratch.dir(), &[&admin]);
    sshd.authorize(&user.name, &key);
    sshd.authorize("root", &root_key);
    let log = || format!("sshd log:\n{}", sshd.log());
    let mut m = Monitor::start(&["--events", "--policy", policy.to_str().expect("utf-8")]);
    let daemon = m.pid();
    let source = IpAddr::from(admin.ns_v4);
    let as_user = Client::new(&admin, &sshd, &user.name, Auth::Key(key.clone()));
    let as_root = Client::new(&admin, &sshd, "root", Auth::Key(root_key.clone()));

    let check = |login: &Value, uid: u32, command: Value| {
        assert_eq!(login["login"]["uid"], uid, "{login}");
        assert_eq!(login["login"]["command"], command, "{login}");
        assert_eq!(login["enrichment"]["trusted"], true, "{login}");
        assert_eq!(login["enrichment"]["tor_exit"], true, "{login}");
        assert_eq!(login["login"]["sshd"]["listener"], sshd.pid(), "{login}");
    };

    // A command.
    let from = m.seen.len();
    as_user.run("id").assert_ok("ssh host id", &log());
    let login = next_login(&mut m, from, source, "the command's login");
    check(&login, user.uid, serde_json::json!(["bash", "-c", "id"]));
    assert_eq!(login["login"]["method"], "publickey", "{login}");
    assert_eq!(login["login"]["tty"], Value::Null, "{login}");

    // A login shell on a pty.
    let from = m.seen.len();
    as_user.pty("id\nexit\n").assert_ok("ssh -tt host", &log());
    let login = next_login(&mut m, from, source, "the pty's login");
    check(&login, user.uid, serde_json::json!(["-bash"]));

    // sftp.
    let from = m.seen.len();
    as_user
        .sftp(scratch.dir(), "ls /\n")
        .assert_ok("sftp -b", &log());
    let login = next_login(&mut m, from, source, "sftp's login");
    check(
        &login,
        user.uid,
        serde_json::json!(["bash", "-c", "/usr/lib/openssh/sftp-server"]),
    );

    // -N: no program, the user child only drops to the user.
    let from = m.seen.len();
    let session = as_user.open_no_command(&sshd);
    let login = next_login(&mut m, from, source, "-N's login");
    check(&login, user.uid, Value::Null);
    assert_eq!(
        Some(login["process"]["pid"].as_u64().unwrap_or(0) as u32),
        session.user_child,
        "{login}"
    );
    session.close();

    // A password.
    let password = user.with_password();
    let from = m.seen.len();
    Client::new(
        &admin,
        &sshd,
        &user.name,
        Auth::Password(password.secret.clone()),
    )
    .run("id")
    .assert_ok("ssh with a password", &log());
    let login = next_login(&mut m, from, source, "the password login");
    assert_eq!(login["login"]["method"], "password", "{login}");
    drop(password);

    // root: a command, and -N, where nothing changes its uid.
    let from = m.seen.len();
    as_root.run("id").assert_ok("ssh root@host id", &log());
    let login = next_login(&mut m, from, source, "root's login");
    check(&login, 0, serde_json::json!(["bash", "-c", "id"]));
    assert_eq!(login["login"]["user"], "root", "{login}");
    let from = m.seen.len();
    let session = as_root.open_no_command(&sshd);
    let login = next_login(&mut m, from, source, "root's -N login");
    check(&login, 0, Value::Null);
    assert_eq!(login["process"]["pid"], session.monitor, "{login}");
    session.close();

    // A wrong key: the connection is accepted, and it is no login.
    let from = m.seen.len();
    let refused = Client::new(&admin, &sshd, &user.name, Auth::Key(wrong_key)).run("id");
    assert!(!refused.success(), "a wrong key must fail: {refused:#?}");
    m.wait_for("the refused connection's accept", TIMEOUT, |v| {
        v["type"] == "event"
            && v["event"] == "accept"
            && v["socket"]["remote"]["ip"] == source.to_string()
    });
    m.drain_for(QUIET);
    assert!(
        !since(&m, from).iter().any(|v| is_login_from(v, source)),
        "a refused key made a login"
    );

    // None of it alerted: every login came from the trusted network.
    let alerts: Vec<&Value> = m
        .seen
        .iter()
        .filter(|v| {
            v["type"] == "alert"
                && v["rule"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("ssh_login"))
        })
        .collect();
    assert!(alerts.is_empty(), "{alerts:#?}");
    let status = m.stop();
    assert!(
        status["events"]["login"].as_u64().unwrap_or(0) >= 7,
        "{status}"
    );
    drop(sshd);
    record_only(daemon, "ssh_logins_trusted", RECORDED);
}

/// The /30 network of a namespace address.
fn mask30(ip: std::net::Ipv4Addr) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(ip) & !3)
}

/// A TCP listener inside `ns` (socat), killed on drop.
struct NsListener(Child);

impl Drop for NsListener {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn in_namespace_listener(ns: &NetNs, port: u16) -> NsListener {
    let child = ns
        .command("socat")
        .args([
            "-u",
            &format!("TCP4-LISTEN:{port},bind={},reuseaddr,fork", ns.ns_v4),
            "OPEN:/dev/null,wronly",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start socat in the namespace");
    // Listening once `ss` inside the namespace shows it.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", &ns.name, "ss", "-Htln"])
            .output()
            .expect("ss");
        if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port} ")) {
            break;
        }
        assert!(Instant::now() < deadline, "socat did not listen on {port}");
        thread::sleep(Duration::from_millis(20));
    }
    NsListener(child)
}
