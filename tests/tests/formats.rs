//! The daemon's `--format ocsf` and `--format ecs` end to end: with `--events`, a loopback
//! listener (alerting: the scenario's policy does not allow loopback listens), a connect to it
//! and its accept, a program run and its exit, an SSH login from a Tor exit (a network namespace
//! the test creates, the real OpenSSH server of tests/src/sshd.rs) and its alert, and status
//! records (started, running, stopped). Every line the daemon prints must be a valid OCSF 1.8.0
//! record of its class or a valid ECS document (tests/schemas/check.rs), and each of those
//! events must be there, mapped as docs/formats.md says.
//!
//! Run as root, one at a time: `cargo xtask test -- format`.

#[path = "../schemas/check.rs"]
mod check;

use std::{
    collections::BTreeSet,
    net::{IpAddr, TcpListener, TcpStream},
    process::Command,
    time::Duration,
};

use monitor_tests::{
    Monitor, privileged,
    sshd::{Auth, Client, Key, NetNs, Scratch, Sshd, TestUser},
};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(10);

/// What the scenario did, for the format's predicates.
struct Done {
    port: u16,
    child: u32,
    source: IpAddr,
    user: String,
}

/// Runs the scenario under `monitor --events --format <format>` and returns every record printed,
/// after checking that each of `expected(done)`'s predicates matches one.
fn scenario(
    format: &str,
    expected: impl Fn(&Done) -> Vec<(&'static str, Box<dyn Fn(&Value) -> bool>)>,
) -> Vec<Value> {
    let scratch = Scratch::new(&format!("format-{format}"));
    let user = TestUser::ensure();
    let exit_node = NetNs::create();
    let key = Key::generate(scratch.dir(), "user_key");
    let tor = scratch.write("tor-exits.txt", &format!("{}\n", exit_node.ns_v4));
    let policy = scratch.write(
        "policy.toml",
        &format!(
            "# Written by tests/tests/formats.rs: loopback listens alert, the namespace is a Tor exit.\n\
             [enrichment]\ntor_exits = \"{}\"\n\n[rules.unexpected_listen]\nallow_loopback = false\n",
            tor.display()
        ),
    );
    let mut m = Monitor::start(&[
        "--events",
        "--format",
        format,
        "--status-interval",
        "1",
        "--policy",
        policy.to_str().expect("utf-8 path"),
    ]);

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("local addr").port();
    let _client = TcpStream::connect(("127.0.0.1", port)).expect("connect 127.0.0.1");
    let _server = listener.accept().expect("accept");
    let child = Command::new("/bin/true").spawn().expect("run /bin/true");
    let child_pid = child.id();
    let status = child.wait_with_output().expect("wait /bin/true").status;
    assert!(status.success());

    let sshd = Sshd::start(scratch.dir(), &[&exit_node]);
    sshd.authorize(&user.name, &key);
    Client::new(&exit_node, &sshd, &user.name, Auth::Key(key))
        .run("id")
        .assert_ok("ssh id", &format!("sshd log:\n{}", sshd.log()));

    let done = Done {
        port,
        child: child_pid,
        source: IpAddr::from(exit_node.ns_v4),
        user: user.name.clone(),
    };
    for (what, matches) in expected(&done) {
        m.wait_for(what, TIMEOUT, |v| matches(v));
    }
    drop(sshd);
    let (_, records) = m.stop_with_records();
    records
}

fn assert_all_valid(format: &str, records: &[Value], errors: impl Fn(&Value) -> Vec<String>) {
    assert!(
        records.len() > 10,
        "{format}: only {} records",
        records.len()
    );
    let bad: Vec<String> = records
        .iter()
        .filter_map(|v| {
            let e = errors(v);
            (!e.is_empty()).then(|| format!("{v}\n  {}", e.join("\n  ")))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{format}: {} of {} records are invalid:\n{}",
        bad.len(),
        records.len(),
        bad.join("\n")
    );
}

fn schemas() -> std::path::PathBuf {
    check::dir(env!("CARGO_MANIFEST_DIR"))
}

type Expected = Vec<(&'static str, Box<dyn Fn(&Value) -> bool>)>;

#[test]
fn format_ocsf_records_validate_against_the_ocsf_schemas() {
    if !privileged("format_ocsf_records_validate_against_the_ocsf_schemas") {
        return;
    }
    let ocsf = check::Ocsf::load(&schemas());
    let records = scenario("ocsf", |d: &Done| -> Expected {
        let (port, child, source, user) = (d.port, d.child, d.source.to_string(), d.user.clone());
        let source2 = source.clone();
        vec![
            (
                "Network Activity: Listen",
                Box::new(move |v| v["type_uid"] == 400_107 && v["dst_endpoint"]["port"] == port),
            ),
            (
                "Network Activity: Open (connect)",
                Box::new(move |v| {
                    v["type_uid"] == 400_101
                        && v["metadata"]["event_code"] == "connect"
                        && v["dst_endpoint"]["port"] == port
                        && v["connection_info"]["direction"] == "Local"
                }),
            ),
            (
                "Network Activity: Open (accept)",
                Box::new(move |v| {
                    v["type_uid"] == 400_101
                        && v["metadata"]["event_code"] == "accept"
                        && v["dst_endpoint"]["port"] == port
                }),
            ),
            (
                "Process Activity: Launch of /bin/true",
                Box::new(move |v| {
                    v["type_uid"] == 100_701
                        && v["process"]["pid"] == child
                        && v["process"]["file"]["name"] == "true"
                        && v["actor"]["process"]["pid"] == std::process::id()
                }),
            ),
            (
                "Process Activity: Terminate of /bin/true",
                Box::new(move |v| {
                    v["type_uid"] == 100_702 && v["process"]["pid"] == child && v["exit_code"] == 0
                }),
            ),
            (
                "Detection Finding: unexpected_listen",
                Box::new(move |v| {
                    v["type_uid"] == 200_401
                        && v["finding_info"]["analytic"]["uid"] == "unexpected_listen"
                        && v["evidences"][0]["dst_endpoint"]["port"] == port
                }),
            ),
            (
                "Authentication: Logon",
                Box::new(move |v| {
                    v["type_uid"] == 300_201
                        && v["src_endpoint"]["ip"] == source
                        && v["user"]["name"] == user
                        && v["is_remote"] == true
                        && v["enrichments"][0]["type"] == "tor_exit"
                }),
            ),
            (
                "Detection Finding: ssh_login_tor",
                Box::new(move |v| {
                    v["type_uid"] == 200_401
                        && v["finding_info"]["analytic"]["uid"] == "ssh_login_tor"
                        && v["severity_id"] == 5
                        && v["enrichments"][0]["value"] == source2
                }),
            ),
            (
                "Application Lifecycle: Running",
                Box::new(|v| v["class_uid"] == 6002 && v["activity_name"] == "Running"),
            ),
        ]
    });
    assert_all_valid("ocsf", &records, |v| ocsf.errors(v));
    assert!(
        records.iter().any(|v| v["type_uid"] == 600_204),
        "a stopped record"
    );
    // Every class there is a schema for was printed.
    let classes: BTreeSet<u64> = records
        .iter()
        .filter_map(|v| v["class_uid"].as_u64())
        .collect();
    assert_eq!(classes.into_iter().collect::<Vec<_>>(), ocsf.class_uids());
}

#[test]
fn format_ecs_records_fit_the_ecs_field_definitions() {
    if !privileged("format_ecs_records_fit_the_ecs_field_definitions") {
        return;
    }
    let ecs = check::Ecs::load(&schemas());
    let records = scenario("ecs", |d: &Done| -> Expected {
        let (port, child, source, user) = (d.port, d.child, d.source.to_string(), d.user.clone());
        let source2 = source.clone();
        let action =
            |v: &Value, a: &str| v["event"]["kind"] == "event" && v["event"]["action"] == a;
        vec![
            (
                "listen",
                Box::new(move |v| action(v, "listen") && v["destination"]["port"] == port),
            ),
            (
                "connect",
                Box::new(move |v| {
                    action(v, "connect")
                        && v["destination"]["port"] == port
                        && v["network"]["direction"] == "egress"
                }),
            ),
            (
                "accept",
                Box::new(move |v| {
                    action(v, "accept")
                        && v["destination"]["port"] == port
                        && v["network"]["direction"] == "ingress"
                }),
            ),
            (
                "exec of /bin/true",
                Box::new(move |v| {
                    action(v, "exec")
                        && v["process"]["pid"] == child
                        && v["process"]["parent"]["pid"] == std::process::id()
                }),
            ),
            (
                "exit of /bin/true",
                Box::new(move |v| {
                    action(v, "exit")
                        && v["process"]["pid"] == child
                        && v["process"]["exit_code"] == 0
                }),
            ),
            (
                "unexpected_listen alert",
                Box::new(move |v| {
                    v["event"]["kind"] == "alert"
                        && v["rule"]["id"] == "unexpected_listen"
                        && v["destination"]["port"] == port
                }),
            ),
            (
                "login",
                Box::new(move |v| {
                    action(v, "login")
                        && v["source"]["ip"] == source
                        && v["user"]["name"] == user
                        && v["threat"]["enrichments"][0]["indicator"]["provider"] == "tor_exits"
                }),
            ),
            (
                "ssh_login_tor alert",
                Box::new(move |v| {
                    v["event"]["kind"] == "alert"
                        && v["rule"]["id"] == "ssh_login_tor"
                        && v["event"]["severity"] == 5
                        && v["threat"]["enrichments"][0]["matched"]["atomic"] == source2
                }),
            ),
            (
                "running status",
                Box::new(|v| v["event"]["kind"] == "state" && v["service"]["state"] == "running"),
            ),
        ]
    });
    assert_all_valid("ecs", &records, |v| ecs.errors(v));
    assert!(
        records.iter().any(|v| v["event"]["action"] == "stopped"),
        "a stopped record"
    );
}
