//! Replays every events file under tests/fixtures (hand-written to the record contract) and
//! tests/fixtures/recorded (recorded from the real end-to-end scenarios) through the detection
//! code, checks the alerts against each folder's EXPECTED.toml, and validates every alert
//! against docs/alert.schema.json. No root needed.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Arc,
};

use monitor::{
    policy::Policy,
    record::{AlertRecord, Record},
    replay,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    #[serde(default)]
    replay: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    file: String,
    policy: Option<String>,
    alerts: Vec<Expected>,
}

/// One expected alert: `rule` and whichever other fields the manifest gives.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    rule: String,
    severity: Option<String>,
    title: Option<String>,
    dedup: Option<String>,
    event: Option<String>,
    pre_existing: Option<bool>,
    suppressed: Option<u64>,
    events_lost: Option<u64>,
    exe: Option<String>,
    argv: Option<Vec<String>>,
    ancestor_exe: Option<String>,
    /// `web_server.exe`.
    web_server_exe: Option<String>,
    shell_match: Option<String>,
    web_server_via: Option<String>,
    /// `socket.protocol`.
    protocol: Option<String>,
    /// `community_id`; `"none"` for an alert that must not carry one.
    community_id: Option<String>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load_manifest(dir: &Path) -> Manifest {
    let path = dir.join("EXPECTED.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn jsonl_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| Path::new(name).extension().is_some_and(|e| e == "jsonl"))
        .collect()
}

fn run_entry(dir: &Path, entry: &Entry) -> Vec<AlertRecord> {
    let policy = match &entry.policy {
        Some(p) => Policy::from_file(&dir.join(p)).unwrap_or_else(|e| panic!("{e}")),
        None => Policy::embedded_default(),
    };
    replay::alerts_from_file(&dir.join(&entry.file), Arc::new(policy))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn json_str<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => panic!("expected a JSON string, got {other:?}"),
    }
}

fn check_alert(file: &str, index: usize, got: &AlertRecord, want: &Expected) {
    let at = format!(
        "{file}: alert {index} ({})",
        serde_json::to_string(got).unwrap_or_default()
    );
    assert_eq!(json_str(&got.rule), want.rule, "{at}: rule");
    if let Some(v) = &want.severity {
        assert_eq!(&json_str(&got.severity), v, "{at}: severity");
    }
    if let Some(v) = &want.title {
        assert_eq!(&got.title, v, "{at}: title");
    }
    if let Some(v) = &want.dedup {
        assert_eq!(&got.dedup, v, "{at}: dedup");
    }
    if let Some(v) = &want.event {
        assert_eq!(&json_str(&got.event), v, "{at}: event");
    }
    if let Some(v) = want.pre_existing {
        assert_eq!(got.pre_existing, v, "{at}: pre_existing");
    }
    if let Some(v) = want.suppressed {
        assert_eq!(got.suppressed, v, "{at}: suppressed");
    }
    if let Some(v) = want.events_lost {
        assert_eq!(got.events_lost, v, "{at}: events_lost");
    }
    if let Some(v) = &want.exe {
        assert_eq!(got.process.exe.as_ref(), Some(v), "{at}: process.exe");
    }
    if let Some(v) = &want.argv {
        assert_eq!(&got.process.argv, v, "{at}: process.argv");
    }
    if let Some(v) = &want.ancestor_exe {
        assert!(
            got.ancestry.iter().any(|a| a.exe.as_ref() == Some(v)),
            "{at}: no ancestor with exe {v}"
        );
    }
    if let Some(v) = &want.web_server_exe {
        assert_eq!(
            got.web_server.as_ref().and_then(|w| w.exe.as_ref()),
            Some(v),
            "{at}: web_server.exe"
        );
    }
    if let Some(v) = &want.shell_match {
        assert_eq!(
            got.shell_match.map(|m| json_str(&m)).as_ref(),
            Some(v),
            "{at}: shell_match"
        );
    }
    if let Some(v) = &want.web_server_via {
        assert_eq!(
            got.web_server_via.map(|m| json_str(&m)).as_ref(),
            Some(v),
            "{at}: web_server_via"
        );
    }
    if let Some(v) = &want.community_id {
        let want = (v != "none").then_some(v);
        assert_eq!(got.community_id.as_ref(), want, "{at}: community_id");
    }
    if let Some(v) = &want.protocol {
        assert_eq!(
            got.socket.as_ref().map(|s| json_str(&s.protocol)).as_ref(),
            Some(v),
            "{at}: socket.protocol"
        );
    }
}

/// Checks one fixture folder; returns the alerts of every file, for schema validation.
fn check_folder(dir: &Path) -> Vec<(String, AlertRecord)> {
    let manifest = load_manifest(dir);
    let listed: BTreeSet<String> = manifest.replay.iter().map(|e| e.file.clone()).collect();
    let present = jsonl_files(dir);
    let unlisted: Vec<_> = present.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "{}: files without an EXPECTED.toml entry: {unlisted:?}",
        dir.display()
    );
    let mut all = Vec::new();
    for entry in &manifest.replay {
        let alerts = run_entry(dir, entry);
        assert_eq!(
            alerts.len(),
            entry.alerts.len(),
            "{}: alert count; got {:#?}",
            entry.file,
            alerts
                .iter()
                .map(|a| (&a.rule, &a.title, &a.dedup, a.suppressed))
                .collect::<Vec<_>>()
        );
        for (i, (got, want)) in alerts.iter().zip(&entry.alerts).enumerate() {
            check_alert(&entry.file, i, got, want);
        }
        all.extend(alerts.into_iter().map(|a| (entry.file.clone(), a)));
    }
    all
}

#[test]
fn hand_written_fixtures_raise_the_expected_alerts() {
    let alerts = check_folder(&fixtures());
    let rules: BTreeSet<String> = alerts.iter().map(|(_, a)| json_str(&a.rule)).collect();
    assert_eq!(
        rules.len(),
        monitor::rules::Rules::COUNT,
        "the fixtures exercise every rule: {rules:?}"
    );
}

#[test]
fn recorded_fixtures_raise_the_expected_alerts() {
    let dir = fixtures().join("recorded");
    // Recorded by the privileged end-to-end scenarios (tests/scenarios/record.sh) and committed:
    // a folder without them proves nothing.
    let recorded = jsonl_files(&dir);
    assert!(
        !recorded.is_empty(),
        "no recorded fixtures in {}: record them with tests/scenarios/record.sh",
        dir.display()
    );
    let alerts = check_folder(&dir);
    assert!(
        !alerts.is_empty(),
        "the recorded fixtures raise no alert at all"
    );
}

fn schema_validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/alert.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn schema_errors(validator: &jsonschema::Validator, alert: &serde_json::Value) -> Vec<String> {
    validator
        .iter_errors(alert)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[test]
fn every_alert_from_the_fixtures_validates_against_the_schema() {
    let validator = schema_validator();
    let mut alerts = check_folder(&fixtures());
    alerts.extend(check_folder(&fixtures().join("recorded")));
    assert!(!alerts.is_empty());
    for (file, alert) in &alerts {
        let value =
            serde_json::to_value(Record::Alert(alert.clone())).unwrap_or_else(|e| panic!("{e}"));
        let errors = schema_errors(&validator, &value);
        assert!(errors.is_empty(), "{file}: {value}\n{errors:#?}");
    }
}

#[test]
fn schema_rejects_broken_alerts() {
    let validator = schema_validator();
    let (_, alert) = check_folder(&fixtures())
        .into_iter()
        .find(|(_, a)| a.socket.is_some())
        .unwrap_or_else(|| panic!("no alert with a socket"));
    let good = serde_json::to_value(Record::Alert(alert)).unwrap_or_else(|e| panic!("{e}"));
    assert!(schema_errors(&validator, &good).is_empty());
    type Mutation = (&'static str, fn(&mut serde_json::Value));
    let mutations: [Mutation; 9] = [
        ("unknown severity", |v| v["severity"] = "SEVERE".into()),
        ("missing events_lost", |v| {
            v.as_object_mut().map(|o| o.remove("events_lost"));
        }),
        ("negative suppressed", |v| v["suppressed"] = (-1).into()),
        ("unknown field", |v| v["extra"] = true.into()),
        ("bad ip", |v| {
            v["socket"]["local"]["ip"] = "999.1.1.1".into();
        }),
        ("time not UTC RFC 3339", |v| {
            v["time"] = "2026-11-23 05:00:00".into();
        }),
        ("dedup of another rule", |v| {
            v["dedup"] = "webserver_shell:/usr/sbin/nginx:/usr/bin/dash".into();
        }),
        ("community_id of another version", |v| {
            v["community_id"] = "2:wCb3OG7yAFWelaUydu0D+125CLM=".into();
        }),
        ("community_id cut short", |v| {
            v["community_id"] = "1:wCb3OG7y".into();
        }),
    ];
    for (what, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert!(
            !schema_errors(&validator, &bad).is_empty(),
            "schema accepted an alert with {what}: {bad}"
        );
    }
}
