//! The daemon's `community_id` against Corelight's reference implementation (the `communityid`
//! package of the Python Package Index, which `cargo xtask bootstrap` installs into a venv under
//! the target directory): the same tuples must give the same strings, from either end of the flow.
//!
//! The tuples are real: every record with a `community_id` in the replay fixtures (the recorded
//! ones come from the privileged end-to-end scenarios: nginx's and socat's connects, UDP reverse
//! shells, SSH logins over IPv4 and IPv6), and the 4-tuples of TCP and UDP sockets this test
//! connects over loopback, IPv4 and IPv6, as the kernel chose their ports. Each is checked with
//! seed 0 (the default) and two others, in both directions.
//!
//! The reference's interpreter is `$COMMUNITY_ID_REFERENCE` (set by `cargo xtask test`), else
//! the bootstrap's venv in `target/`. When it cannot run, the test FAILS if the variable is set,
//! in CI (`CI`) or with `MONITOR_REQUIRE_PRIVILEGED=1`; otherwise it skips with a loud message.

use std::{
    collections::BTreeSet,
    io::Write as _,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use monitor::{
    enrich::community_id,
    record::{Endpoint, Family, Protocol, Recorded, SocketInfo},
};

const ENV: &str = "COMMUNITY_ID_REFERENCE";

/// One flow as a record has it, and the id the record carried (`None`: a live socket).
#[derive(Clone, Debug)]
struct Tuple {
    socket: SocketInfo,
    recorded: Option<String>,
    origin: String,
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The reference's interpreter, or `None` (after a loud message) when the test may skip.
fn reference_python() -> Option<PathBuf> {
    let explicit = std::env::var_os(ENV).map(PathBuf::from);
    let python = explicit.clone().unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| manifest_dir().join("../target"), PathBuf::from);
        target.join("community-id-reference/bin/python")
    });
    let works = Command::new(&python)
        .args(["-c", "import communityid"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Some(python);
    }
    let required = explicit.is_some()
        || std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
        || std::env::var("MONITOR_REQUIRE_PRIVILEGED").as_deref() == Ok("1");
    assert!(
        !required,
        "Corelight's Community ID reference does not run at {} (`cargo xtask bootstrap` \
         installs it)",
        python.display()
    );
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!! SKIPPED community_id_matches_the_reference: no Community ID reference at {} \
         (run `cargo xtask bootstrap`) !!!!!!!!\n",
        python.display()
    );
    None
}

/// Runs the reference on `(seed, tuple)` pairs: one id per pair.
fn reference_ids(python: &Path, flows: &[(u16, &SocketInfo)]) -> Vec<String> {
    let mut input = String::new();
    for (seed, s) in flows {
        let remote = s.remote.expect("a flow has a remote side");
        let line = serde_json::json!({
            "seed": seed,
            "proto": match s.protocol { Protocol::Tcp => "tcp", Protocol::Udp => "udp" },
            "saddr": s.local.ip.to_string(),
            "daddr": remote.ip.to_string(),
            "sport": s.local.port,
            "dport": remote.port,
        });
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let mut child = Command::new(python)
        .arg(manifest_dir().join("tests/community_id_reference.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the tuples");
    let out = child.wait_with_output().expect("reference output");
    assert!(out.status.success(), "the reference failed: {}", out.status);
    let ids: Vec<String> = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ids.len(), flows.len(), "one id per tuple");
    ids
}

/// Every event record with a `community_id` in the fixtures, hand-written and recorded.
fn fixture_tuples() -> Vec<Tuple> {
    let mut out = Vec::new();
    for dir in ["tests/fixtures", "tests/fixtures/recorded"] {
        let dir = manifest_dir().join(dir);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read fixture");
            for (n, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let Ok(Recorded::Event(event)) = Recorded::parse(line) else {
                    continue;
                };
                if let (Some(id), Some(socket)) = (&event.community_id, &event.socket) {
                    out.push(Tuple {
                        socket: socket.clone(),
                        recorded: Some(id.clone()),
                        origin: format!("{}:{}", file.display(), n + 1),
                    });
                }
            }
        }
    }
    out
}

fn endpoint(addr: SocketAddr) -> Endpoint {
    Endpoint {
        ip: addr.ip(),
        port: addr.port(),
    }
}

fn flow(protocol: Protocol, local: SocketAddr, remote: SocketAddr, origin: &str) -> Tuple {
    Tuple {
        socket: SocketInfo {
            protocol,
            family: if local.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            local: endpoint(local),
            remote: Some(endpoint(remote)),
            mapped_ipv4: false,
        },
        recorded: None,
        origin: origin.to_owned(),
    }
}

/// TCP and UDP flows over loopback, IPv4 and IPv6, with the ports the kernel picked.
fn live_tuples() -> Vec<Tuple> {
    let mut out = Vec::new();
    for host in ["127.0.0.1", "[::1]"] {
        let listener = TcpListener::bind(format!("{host}:0")).expect("tcp listen");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        out.push(flow(
            Protocol::Tcp,
            client.local_addr().expect("addr"),
            client.peer_addr().expect("peer"),
            &format!("live tcp {host}"),
        ));
        let server = UdpSocket::bind(format!("{host}:0")).expect("udp bind");
        let client = UdpSocket::bind(format!("{host}:0")).expect("udp bind");
        client
            .connect(server.local_addr().expect("addr"))
            .expect("udp connect");
        out.push(flow(
            Protocol::Udp,
            client.local_addr().expect("addr"),
            client.peer_addr().expect("peer"),
            &format!("live udp {host}"),
        ));
    }
    out
}

/// The same flow seen from the other end.
fn reversed(s: &SocketInfo) -> SocketInfo {
    let remote = s.remote.expect("a flow has a remote side");
    SocketInfo {
        local: remote,
        remote: Some(s.local),
        ..s.clone()
    }
}

#[test]
fn community_id_matches_the_reference() {
    let Some(python) = reference_python() else {
        return;
    };
    let fixtures = fixture_tuples();
    assert!(
        fixtures.iter().any(|t| t.origin.contains("/recorded/")),
        "no recorded fixture carries a community_id: re-record them (tests/scenarios/record.sh)"
    );
    let tuples: Vec<Tuple> = fixtures.into_iter().chain(live_tuples()).collect();
    let kinds: BTreeSet<(bool, bool)> = tuples
        .iter()
        .map(|t| {
            (
                matches!(t.socket.local.ip, IpAddr::V6(_)),
                t.socket.protocol == Protocol::Udp,
            )
        })
        .collect();
    assert_eq!(kinds.len(), 4, "IPv4 and IPv6, TCP and UDP: {kinds:?}");

    let seeds = [0u16, 1, 65535];
    let mut flows: Vec<(u16, SocketInfo, &Tuple)> = Vec::new();
    for t in &tuples {
        for seed in seeds {
            flows.push((seed, t.socket.clone(), t));
            flows.push((seed, reversed(&t.socket), t));
        }
    }
    let pairs: Vec<(u16, &SocketInfo)> = flows.iter().map(|(seed, s, _)| (*seed, s)).collect();
    let expected = reference_ids(&python, &pairs);
    for ((seed, socket, tuple), want) in flows.iter().zip(&expected) {
        let got = community_id::of(*seed, socket);
        assert_eq!(
            got.as_deref(),
            Some(want.as_str()),
            "{}: seed {seed}, {socket:?}",
            tuple.origin
        );
        if *seed == 0
            && let Some(recorded) = &tuple.recorded
        {
            assert_eq!(
                recorded, want,
                "{}: the recorded community_id",
                tuple.origin
            );
        }
    }
}
