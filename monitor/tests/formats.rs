//! Every output format against the real schemas: each event record of the replay fixtures
//! (hand-written and recorded from real programs), every alert `monitor replay` raises on them,
//! and status records of each kind, encoded as OCSF (checked against the OCSF 1.8.0 JSON Schemas
//! of tests/schemas/ocsf), ECS (checked against ECS's field definitions, tests/schemas/ecs) and
//! text (one line, nothing a terminal would interpret). Also `monitor replay --format`. No root
//! needed.

#[path = "../../tests/schemas/check.rs"]
mod check;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};

use monitor::{
    output::{Encode, ecs::Ecs, ocsf::Ocsf, text::Text},
    policy::Policy,
    record::{
        DedupStatus, EventCounts, HookStatus, ListStatus, OutputDrops, OutputStatus, ProgramRuns,
        Record, Recorded, Refusal, ReloadError, ReloadInfo, Status, StatusRecord, TableStats,
    },
    replay,
};
use serde::Deserialize;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[derive(Deserialize)]
struct Manifest {
    replay: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    file: String,
    policy: Option<String>,
}

/// Every record the fixtures give: their events, the alerts replay raises on them (with each
/// file's policy), and status records of every kind.
fn records() -> Vec<(String, Record)> {
    let mut out = Vec::new();
    for dir in [fixtures(), fixtures().join("recorded")] {
        let path = dir.join("EXPECTED.toml");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let manifest: Manifest =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for entry in manifest.replay {
            let file = dir.join(&entry.file);
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                if let Recorded::Event(event) = Recorded::parse(line)
                    .unwrap_or_else(|e| panic!("{}:{}: {e}", file.display(), i + 1))
                {
                    out.push((format!("{}:{}", entry.file, i + 1), Record::Event(*event)));
                }
            }
            let policy = match &entry.policy {
                Some(p) => Policy::from_file(&dir.join(p)).unwrap_or_else(|e| panic!("{e}")),
                None => Policy::embedded_default(),
            };
            let alerts =
                replay::alerts_from_file(&file, Arc::new(policy)).unwrap_or_else(|e| panic!("{e}"));
            for (i, alert) in alerts.into_iter().enumerate() {
                out.push((format!("{} alert {i}", entry.file), Record::Alert(alert)));
            }
        }
    }
    for status in [
        Status::Started,
        Status::Running,
        Status::Reloaded,
        Status::Stopped,
    ] {
        out.push((
            format!("status {status:?}"),
            Record::Status(status_record(status)),
        ));
    }
    out
}

/// A status record as the daemon prints one: hooks that attached and refusals, lists (one kept
/// from a bad download), errors, dedup counts.
fn status_record(status: Status) -> StatusRecord {
    StatusRecord {
        status,
        time: "2026-11-23T05:00:00.123456789Z".to_owned(),
        host: "web1".to_owned(),
        version: env!("CARGO_PKG_VERSION"),
        hooks: BTreeMap::from([
            (
                "listen".to_owned(),
                HookStatus {
                    attached: Some("tracepoint:sock:inet_sock_set_state".to_owned()),
                    refused: vec![Refusal {
                        hook: "fentry:inet_listen".to_owned(),
                        error: "Operation not permitted (os error 1)".to_owned(),
                    }],
                },
            ),
            ("pam".to_owned(), HookStatus::default()),
        ]),
        ring_buffer_bytes: 1 << 20,
        policy: "/etc/monitor/policy.toml".to_owned(),
        events: EventCounts {
            listen: 3,
            connect: 40,
            exec: 12,
            ..EventCounts::default()
        },
        drops: 2,
        errors: BTreeMap::from([("decode", 0), ("exec", 1)]),
        process_table: TableStats {
            size: 210,
            capacity: 65536,
            evicted: 0,
        },
        alerts: 5,
        alerts_by_rule: BTreeMap::from([("unexpected_listen", 4), ("webserver_shell", 1)]),
        dedup: DedupStatus {
            suppressed_by_key: BTreeMap::from([(
                "unexpected_listen:/usr/bin/nc.openbsd:4444".to_owned(),
                2,
            )]),
            suppressed_pending: 2,
            suppressed_total: 7,
        },
        ssh_sessions: 1,
        list_reloads: 1,
        policy_reloads: 1,
        policy_reloads_refused: 1,
        // A refused SIGHUP reload.
        reload: (status == Status::Reloaded).then(|| ReloadInfo {
            trigger: "sighup",
            accepted: false,
            changed: vec![],
            error: Some(ReloadError {
                file: "/etc/monitor/policy.toml".to_owned(),
                line: Some(12),
                column: Some(9),
                key: Some("rules.unexpected_listen.allow[2].port".to_owned()),
                message: "/etc/monitor/policy.toml:12:9: rules.unexpected_listen.allow[2].port: \
                          port 70000 out of range 1-65535"
                    .to_owned(),
            }),
        }),
        rss_bytes: 17_000_000,
        output: OutputStatus {
            target: "stdout".to_owned(),
            queued_bytes: 4096,
            queue_bytes: 8 << 20,
            dropped: OutputDrops {
                connect: 120,
                ..OutputDrops::default()
            },
            closed: false,
        },
        lists: vec![ListStatus {
            source: "list:vpn".to_owned(),
            path: "/var/lib/monitor/vpn.txt".to_owned(),
            entries: 120,
            bad_lines: 1,
            last: "kept_last_good",
            error: Some("line 3: not an address".to_owned()),
            read_at: "2026-11-23T04:59:00Z".to_owned(),
        }],
        watched_prefixes: 120,
        watched_prefixes_overflow: false,
        pre_existing_listeners: (status == Status::Started).then_some(4),
        programs: (status == Status::Stopped).then(|| {
            BTreeMap::from([(
                "exec_sched_process_exec".to_owned(),
                ProgramRuns {
                    id: 17,
                    runs: 12,
                    run_time_ns: 36_000,
                },
            )])
        }),
    }
}

fn encode(format: &dyn Encode, record: &Record) -> Vec<u8> {
    let mut line = Vec::new();
    format
        .encode(record, &mut line)
        .unwrap_or_else(|e| panic!("{e}"));
    line
}

fn json(line: &[u8]) -> Value {
    serde_json::from_slice(line)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(line)))
}

fn schemas() -> PathBuf {
    check::dir(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_record_in_ocsf_validates_against_its_class_schema() {
    let ocsf = check::Ocsf::load(&schemas());
    let mut classes = BTreeSet::new();
    let records = records();
    for (at, record) in &records {
        let value = json(&encode(&Ocsf, record));
        let errors = ocsf.errors(&value);
        assert!(errors.is_empty(), "{at}: {value}\n{errors:#?}");
        classes.insert(value["class_uid"].as_u64().unwrap_or_default());
    }
    // Every class there is a schema for was exercised, and only those.
    assert_eq!(classes.into_iter().collect::<Vec<_>>(), ocsf.class_uids());
    assert!(records.len() > 200, "{} records", records.len());
}

#[test]
fn every_record_in_ecs_fits_the_ecs_field_definitions() {
    let ecs = check::Ecs::load(&schemas());
    assert_eq!(ecs.version, monitor::output::ecs::VERSION);
    let mut kinds = BTreeSet::new();
    for (at, record) in &records() {
        let value = json(&encode(&Ecs, record));
        let errors = ecs.errors(&value);
        assert!(errors.is_empty(), "{at}: {value}\n{errors:#?}");
        kinds.insert((
            value["event"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            value["event"]["action"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    for action in ["listen", "connect", "accept", "exec", "exit", "login"] {
        assert!(
            kinds.contains(&("event".to_owned(), action.to_owned())),
            "{kinds:?}"
        );
    }
    assert!(kinds.iter().any(|(k, _)| k == "alert"), "{kinds:?}");
    assert!(
        kinds.contains(&("state".to_owned(), "started".to_owned())),
        "{kinds:?}"
    );
}

#[test]
fn every_record_in_text_is_one_clean_line() {
    for (at, record) in &records() {
        let plain = String::from_utf8(encode(&Text { colour: false }, record))
            .unwrap_or_else(|e| panic!("{at}: {e}"));
        assert!(!plain.chars().any(char::is_control), "{at}: {plain:?}");
        assert!(
            plain.starts_with("20"),
            "{at}: starts with the time: {plain}"
        );
        // Colours add SGR sequences (`ESC [ ... m`) and nothing else.
        let coloured = String::from_utf8(encode(&Text { colour: true }, record))
            .unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_ne!(coloured, plain, "{at}");
        assert_eq!(strip_sgr(&coloured), plain, "{at}: {coloured:?}");
    }
}

fn strip_sgr(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\u{1b}[") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('m')
            .unwrap_or_else(|| panic!("an escape that is not SGR: {s:?}"));
        assert!(
            after[..end].chars().all(|c| c.is_ascii_digit() || c == ';'),
            "{s:?}"
        );
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The checks find what is wrong: a broken record of each kind is refused.
#[test]
fn the_checks_refuse_broken_records() {
    let ocsf = check::Ocsf::load(&schemas());
    let ecs = check::Ecs::load(&schemas());
    let records = records();
    let alert = records
        .iter()
        .find(|(_, r)| matches!(r, Record::Alert(a) if a.socket.as_ref().is_some_and(|s| s.remote.is_some())))
        .map(|(_, r)| r)
        .expect("an alert with a remote address");
    let good = json(&encode(&Ocsf, alert));
    assert!(ocsf.errors(&good).is_empty());
    type Mutation = (&'static str, fn(&mut Value));
    let ocsf_mutations: [Mutation; 6] = [
        ("no finding_info", |v| {
            v.as_object_mut().map(|o| o.remove("finding_info"));
        }),
        ("an attribute OCSF does not have", |v| {
            v["monitor_rule"] = "x".into();
        }),
        ("an address that is none", |v| {
            v["evidences"][0]["dst_endpoint"]["ip"] = "999.1.1.1".into();
        }),
        ("a port out of range", |v| {
            v["evidences"][0]["dst_endpoint"]["port"] = 70000.into();
        }),
        ("a severity OCSF does not define", |v| {
            v["severity_id"] = 7.into();
        }),
        ("a type_uid of another activity", |v| {
            v["type_uid"] = 200_402.into();
        }),
    ];
    for (what, mutate) in ocsf_mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert!(
            !ocsf.errors(&bad).is_empty(),
            "OCSF check accepted {what}: {bad}"
        );
    }

    let good = json(&encode(&Ecs, alert));
    assert!(ecs.errors(&good).is_empty());
    let ecs_mutations: [Mutation; 9] = [
        ("a field ECS does not have", |v| {
            v["process"]["bogus"] = 1.into();
        }),
        ("a pid as text", |v| v["process"]["pid"] = "42".into()),
        ("an array where ECS expects one value", |v| {
            v["process"]["name"] = serde_json::json!(["a", "b"]);
        }),
        ("an address that is none", |v| {
            v["destination"]["ip"] = "not-an-ip".into();
        }),
        ("an event.kind ECS does not allow", |v| {
            v["event"]["kind"] = "finding".into();
        }),
        ("an event.type its category does not expect", |v| {
            v["event"]["type"] = serde_json::json!(["creation"]);
        }),
        ("a label that is not a keyword", |v| {
            v["labels"]["dedup"] = serde_json::json!({"a": 1});
        }),
        ("no @timestamp", |v| {
            v.as_object_mut().map(|o| o.remove("@timestamp"));
        }),
        ("a network.direction ECS does not expect", |v| {
            v["network"]["direction"] = "sideways".into();
        }),
    ];
    for (what, mutate) in ecs_mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert!(
            !ecs.errors(&bad).is_empty(),
            "ECS check accepted {what}: {bad}"
        );
    }
}

/// `monitor replay --format` prints the same alerts through the same output formats.
#[test]
fn replay_prints_alerts_in_every_format() {
    let file = fixtures().join("recorded/webserver_shell_php.jsonl");
    let run = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
            .args(["replay", "--format", format])
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("monitor replay: {e}"));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{e}"))
    };
    let native = run("native");
    let count = native.lines().count();
    assert!(count > 0, "the fixture raises alerts");
    let ocsf = check::Ocsf::load(&schemas());
    let lines = run("ocsf");
    assert_eq!(lines.lines().count(), count);
    for line in lines.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["class_uid"], 2004);
        assert!(ocsf.errors(&v).is_empty(), "{line}\n{:#?}", ocsf.errors(&v));
    }
    let ecs = check::Ecs::load(&schemas());
    let lines = run("ecs");
    assert_eq!(lines.lines().count(), count);
    for line in lines.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["event"]["kind"], "alert");
        assert!(ecs.errors(&v).is_empty(), "{line}\n{:#?}", ecs.errors(&v));
    }
    // Text into a pipe: no colours, one line per alert, the severity after the time.
    let text = run("text");
    assert_eq!(text.lines().count(), count);
    assert!(!text.contains('\u{1b}'));
    assert!(
        text.lines().all(|l| l.split(' ').nth(1) == Some("HIGH")),
        "{text}"
    );
}
