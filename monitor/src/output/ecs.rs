//! Elastic Common Schema 9.x (<https://www.elastic.co/docs/reference/ecs>): each record as one
//! ECS document, `event.*` saying what it is (`event.kind` `event`, `alert` or `state`),
//! `process.*` with `process.parent.*`, `source.*`/`destination.*` and `network.*` for
//! connections, `user.*`, `rule.*` for alerts, `threat.enrichments` for list hits, and `labels`
//! (ECS's keyword-valued custom fields) for what ECS has no field for. The mapping, field by
//! field, is docs/formats.md; tests check every field against ECS's definitions
//! (tests/schemas/ecs).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{
    Encode, OutputError,
    fields::{self, Flow, Subject},
};
use crate::record::{
    AlertRecord, Endpoint, EnrichmentInfo, EventRecord, EventType, Family, Protocol, Record,
    Severity, SocketInfo, StatusRecord,
};

/// The ECS release the records follow (`ecs.version`).
pub const VERSION: &str = "9.4.0";

/// ECS JSON lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ecs;

impl Encode for Ecs {
    fn encode(&self, record: &Record, line: &mut Vec<u8>) -> Result<(), OutputError> {
        let mut value = match record {
            Record::Event(e) => event(e),
            Record::Alert(a) => alert(a),
            Record::Status(s) => status(s)?,
        };
        fields::prune(&mut value);
        serde_json::to_writer(&mut *line, &value)?;
        Ok(())
    }
}

/// `event.category` and `event.type` of an event kind (ECS's allowed values).
fn categories(kind: EventType) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        EventType::Listen => (&["network"], &["start"]),
        EventType::Connect | EventType::Accept => (&["network"], &["connection", "start"]),
        EventType::Exec => (&["process"], &["start"]),
        EventType::Exit => (&["process"], &["end"]),
        EventType::Login => (&["authentication", "session"], &["start"]),
    }
}

/// The fields an event and an alert about it share.
fn document(s: &Subject<'_>, event: Value) -> Value {
    let flow = s.flow();
    let login_user = s.login.map(|l| (l.uid, l.user.as_deref()));
    let (uid, name) = login_user.unwrap_or((s.process.uid, s.process.user.as_deref()));
    let mut related_ips: Vec<String> = Vec::new();
    for e in [flow.source, flow.destination].into_iter().flatten() {
        let ip = e.ip.to_string();
        if !related_ips.contains(&ip) {
            related_ips.push(ip);
        }
    }
    let mut related_users: Vec<&str> = Vec::new();
    for user in [s.process.user.as_deref(), name].into_iter().flatten() {
        if !related_users.contains(&user) {
            related_users.push(user);
        }
    }
    json!({
        "@timestamp": s.time,
        "ecs": { "version": VERSION },
        "event": event,
        "host": { "name": s.host, "hostname": s.host, "os": { "type": "linux" } },
        "process": process(s),
        "user": { "id": uid.to_string(), "name": name },
        "source": flow.source.map(endpoint),
        "destination": flow.destination.map(endpoint),
        "network": s.socket.map(|so| network(so, &flow, None)),
        "related": {
            "ip": (!related_ips.is_empty()).then_some(related_ips),
            "user": (!related_users.is_empty()).then_some(related_users),
        },
        "threat": { "enrichments": enrichments(s.enrichment, &flow) },
        "labels": labels(s),
    })
}

fn event(e: &EventRecord) -> Value {
    let s = Subject::from(e);
    let (category, types) = categories(e.event);
    document(
        &s,
        json!({
            "kind": "event",
            "category": category,
            "type": types,
            "action": e.event.as_str(),
            "outcome": (e.event == EventType::Login).then_some("success"),
            "module": "monitor",
            "dataset": "monitor.event",
        }),
    )
}

fn alert(a: &AlertRecord) -> Value {
    let s = Subject::from(a);
    let (category, types) = categories(a.event);
    let mut doc = document(
        &s,
        json!({
            "kind": "alert",
            "category": category,
            "type": types,
            "action": a.event.as_str(),
            "severity": severity(a.severity),
            "id": fields::alert_uid(a),
            "module": "monitor",
            "dataset": "monitor.alert",
        }),
    );
    if let Value::Object(map) = &mut doc {
        map.insert("message".to_owned(), json!(a.title));
        map.insert(
            "rule".to_owned(),
            json!({ "id": a.rule.as_str(), "name": a.rule.as_str(), "ruleset": "monitor" }),
        );
        let labels = map
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(labels) = labels {
            labels.extend([
                ("dedup".to_owned(), json!(a.dedup)),
                ("suppressed".to_owned(), json!(a.suppressed.to_string())),
                ("events_lost".to_owned(), json!(a.events_lost.to_string())),
                ("shell_match".to_owned(), json!(a.shell_match.map(name))),
                (
                    "web_server_via".to_owned(),
                    json!(a.web_server_via.map(name)),
                ),
            ]);
        }
    }
    doc
}

/// `event.severity`: 1 (INFO) to 5 (CRITICAL), as OCSF's `severity_id`.
fn severity(s: Severity) -> u32 {
    match s {
        Severity::Info => 1,
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
    }
}

fn status(s: &StatusRecord) -> Result<Value, OutputError> {
    let state = name(s.status);
    // The counts have no ECS field: each becomes a label named by its path in the native record
    // (`events.connect` → `labels.events_connect`), its value as text. The dedup keys held back
    // are left out (their counts are in `dedup_suppressed_total`).
    let mut native = serde_json::to_value(s)?;
    if let Value::Object(map) = &mut native {
        for mapped in ["status", "time", "host", "version"] {
            map.remove(mapped);
        }
        if let Some(Value::Object(dedup)) = map.get_mut("dedup") {
            dedup.remove("suppressed_by_key");
        }
    }
    let mut labels = BTreeMap::new();
    flatten("", &native, &mut labels);
    Ok(json!({
        "@timestamp": s.time,
        "ecs": { "version": VERSION },
        "event": {
            "kind": "state",
            "action": state,
            "module": "monitor",
            "dataset": "monitor.status",
        },
        "host": { "name": s.host, "hostname": s.host, "os": { "type": "linux" } },
        "service": { "name": "monitor", "type": "monitor", "version": s.version, "state": state },
        "message": format!("monitor {state}"),
        "labels": labels,
    }))
}

/// Every scalar under `value` as a label `<path joined by _>` with its value as text.
fn flatten(path: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    let key = |k: &str| {
        let k: String = k
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if path.is_empty() {
            k
        } else {
            format!("{path}_{k}")
        }
    };
    match value {
        Value::Null => {}
        Value::Object(map) => map.iter().for_each(|(k, v)| flatten(&key(k), v, out)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| flatten(&key(&i.to_string()), v, out)),
        Value::String(s) => {
            out.insert(path.to_owned(), s.clone());
        }
        other => {
            out.insert(path.to_owned(), other.to_string());
        }
    }
}

/// A native enum value's name (`"inode"`, `"lineage"`).
fn name(v: impl Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn process(s: &Subject<'_>) -> Value {
    let p = s.process;
    let parent = match s.parent() {
        Some(a) => json!({
            "pid": a.pid,
            "name": a.comm,
            "executable": a.exe,
            "args": (!a.argv.is_empty()).then_some(&a.argv),
            "args_count": (!a.argv.is_empty()).then_some(a.argv.len()),
            "command_line": fields::command_line(&a.argv),
        }),
        None => json!({ "pid": p.ppid }),
    };
    json!({
        "pid": p.pid,
        "name": p.comm,
        "executable": p.exe,
        "args": (!p.argv.is_empty()).then_some(&p.argv),
        "args_count": (!p.argv.is_empty()).then_some(p.argv.len()),
        "command_line": fields::command_line(&p.argv),
        // ECS: `process.user` is the effective user, `process.real_user` the real one. The
        // record names only the real uid's user.
        "user": p.euid.map(|euid| json!({
            "id": euid.to_string(),
            "name": if euid == p.uid { p.user.as_deref() } else { None },
        })),
        "real_user": { "id": p.uid.to_string(), "name": p.user },
        "group": { "id": p.gid.to_string() },
        "parent": parent,
        "exit_code": s.exit_code.map(fields::exit_code),
    })
}

fn endpoint(e: Endpoint) -> Value {
    json!({ "ip": e.ip.to_string(), "port": e.port })
}

/// `community_id`: the Community ID flow hash, when the record carries one
/// (`network.community_id`).
fn network(socket: &SocketInfo, flow: &Flow, community_id: Option<&str>) -> Value {
    let (transport, iana) = match socket.protocol {
        Protocol::Tcp => ("tcp", "6"),
        Protocol::Udp => ("udp", "17"),
    };
    // Seen from this host; a listen has no direction yet.
    let direction = flow
        .remote
        .and(flow.inbound)
        .map(|inbound| if inbound { "ingress" } else { "egress" });
    json!({
        "transport": transport,
        "iana_number": iana,
        "type": match socket.family {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        },
        "direction": direction,
        "community_id": community_id,
    })
}

/// One `threat.enrichments` entry per list holding the remote address; `None` when none does.
/// (`trusted_networks` is no threat: it is `labels.trusted_network`.)
fn enrichments(e: Option<&EnrichmentInfo>, flow: &Flow) -> Option<Vec<Value>> {
    let (e, remote) = (e?, flow.remote?);
    let field = if flow.inbound == Some(true) {
        "source.ip"
    } else {
        "destination.ip"
    };
    let ip = remote.ip.to_string();
    let kind = if remote.ip.is_ipv4() {
        "ipv4-addr"
    } else {
        "ipv6-addr"
    };
    let hit = |provider: &str, name: Option<&str>, description: String| {
        json!({
            "indicator": {
                "type": kind,
                "ip": ip,
                "provider": provider,
                "name": name,
                "description": description,
            },
            "matched": { "atomic": ip, "field": field, "type": "enrichment" },
        })
    };
    let mut out = Vec::new();
    if e.tor_exit {
        out.push(hit("tor_exits", None, "Tor exit node".to_owned()));
    }
    if let Some(r) = &e.reputation {
        let mut description = r.classification.as_str().to_owned();
        if !r.tags.is_empty() {
            description = format!("{description} ({})", r.tags.join(", "));
        }
        out.push(hit("reputation", r.name.as_deref(), description));
    }
    for list in &e.lists {
        out.push(hit(list, None, format!("in list {list}")));
    }
    (!out.is_empty()).then_some(out)
}

/// What ECS has no field for, as `labels` (keyword values).
fn labels(s: &Subject<'_>) -> Value {
    let text = |v: Option<String>| v.map(Value::String);
    let flag = |b: bool| b.then(|| Value::String("true".to_owned()));
    let ancestry = (!s.ancestry.is_empty()).then(|| {
        s.ancestry
            .iter()
            .map(|a| format!("{} {}", a.pid, a.exe.as_deref().unwrap_or(&a.comm)))
            .collect::<Vec<_>>()
            .join(" < ")
    });
    let program = s.program;
    let tool = s.egress_tool;
    let web = s.web_server;
    let login = s.login;
    json!({
        "cgroup_id": s.process.cgroup_id.to_string(),
        "argv_truncated": flag(s.process.argv_truncated),
        "ancestry": ancestry,
        "filename": s.filename,
        "exit_status": text(s.exit_code.map(|c| c.to_string())),
        "mapped_ipv4": flag(s.socket.is_some_and(|so| so.mapped_ipv4)),
        "pre_existing": flag(s.pre_existing),
        "incident": s.incident,
        "trusted_network": flag(s.enrichment.is_some_and(|e| e.trusted)),
        "web_server_pid": text(web.map(|w| w.pid.to_string())),
        "web_server_exe": web.and_then(|w| w.exe.as_deref()),
        "web_server_filename": web.and_then(|w| w.filename.as_deref()),
        "web_server_matched": text(web.and_then(|w| w.matched).map(name)),
        "program_shell": text(program.and_then(|p| p.shell).map(name)),
        "program_web_server": text(program.and_then(|p| p.web_server).map(name)),
        "program_egress_tool": text(program.and_then(|p| p.egress_tool).map(name)),
        "program_same_as": program.and_then(|p| p.same_as.as_deref()),
        "program_loaded": program.and_then(|p| p.loaded.as_deref()),
        "egress_tool_pid": text(tool.map(|t| t.pid.to_string())),
        "egress_tool_exe": tool.and_then(|t| t.exe.as_deref()),
        "egress_tool_kind": text(tool.map(|t| name(t.kind))),
        "egress_tool_matched": text(tool.map(|t| name(t.matched))),
        "login_method": text(login.map(|l| name(l.method))),
        "login_tty": login.and_then(|l| l.tty.as_deref()),
        "login_command": text(login.and_then(|l| l.command.as_deref()).and_then(fields::command_line)),
        "sshd_listener_pid": text(login.map(|l| l.sshd.listener.to_string())),
        "sshd_session_pid": text(login.map(|l| l.sshd.session.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        record::{Classification, ReputationInfo, RuleId, Verdict},
        testing,
    };

    fn encode(record: &Record) -> Value {
        let mut line = Vec::new();
        Ecs.encode(record, &mut line).unwrap();
        serde_json::from_slice(&line).unwrap()
    }

    /// ECS's `process.user` is the effective user, `process.real_user` the real one.
    #[test]
    fn effective_and_real_users() {
        let mut process = testing::python();
        let listen = testing::listen(testing::T0, process.clone(), "0.0.0.0", 8080);
        let v = encode(&Record::Event(listen));
        assert_eq!(v["process"]["user"], json!({"id": "1000", "name": "app"}));
        assert_eq!(
            v["process"]["real_user"],
            json!({"id": "1000", "name": "app"})
        );
        // A setuid-root program run by app: the record names only the real uid's user.
        process.euid = Some(0);
        let listen = testing::listen(testing::T0, process.clone(), "0.0.0.0", 8080);
        let v = encode(&Record::Event(listen));
        assert_eq!(v["process"]["user"], json!({"id": "0"}));
        assert_eq!(v["process"]["real_user"]["id"], "1000");
        assert_eq!(v["user"], json!({"id": "1000", "name": "app"}));
        // Unknown (a recording older than the field): no effective user.
        process.euid = None;
        let listen = testing::listen(testing::T0, process, "0.0.0.0", 8080);
        let v = encode(&Record::Event(listen));
        assert!(v["process"].get("user").is_none(), "{v}");
        assert_eq!(v["process"]["real_user"]["id"], "1000");
    }

    #[test]
    fn connect_has_process_parent_source_destination_and_egress() {
        let ev = testing::connect(
            testing::T0,
            testing::python(),
            vec![testing::fpm_worker(), testing::systemd()],
            "198.51.100.9",
            4444,
        );
        let v = encode(&Record::Event(ev));
        assert_eq!(v["@timestamp"], testing::T0);
        assert_eq!(v["ecs"]["version"], "9.4.0");
        assert_eq!(v["event"]["kind"], "event");
        assert_eq!(v["event"]["category"], json!(["network"]));
        assert_eq!(v["event"]["type"], json!(["connection", "start"]));
        assert_eq!(v["event"]["action"], "connect");
        assert_eq!(v["process"]["pid"], 4000);
        assert_eq!(v["process"]["args_count"], 4);
        assert_eq!(v["process"]["parent"]["pid"], 901);
        assert_eq!(v["process"]["parent"]["executable"], "/usr/sbin/php-fpm8.2");
        assert_eq!(v["process"]["user"], json!({"id": "1000", "name": "app"}));
        assert_eq!(v["source"], json!({"ip": "10.0.0.5", "port": 40000}));
        assert_eq!(
            v["destination"],
            json!({"ip": "198.51.100.9", "port": 4444})
        );
        assert_eq!(v["network"]["direction"], "egress");
        assert_eq!(v["network"]["transport"], "tcp");
        assert_eq!(v["related"]["ip"], json!(["10.0.0.5", "198.51.100.9"]));
        assert_eq!(
            v["labels"]["ancestry"],
            "901 /usr/sbin/php-fpm8.2 < 1 /usr/lib/systemd/systemd"
        );
        assert!(!v.to_string().contains("null"), "{v}");
    }

    #[test]
    fn the_community_id_hook_fills_network_community_id() {
        let ev = testing::connect(testing::T0, testing::python(), vec![], "198.51.100.9", 53);
        let s = Subject::from(&ev);
        let network = network(ev.socket.as_ref().unwrap(), &s.flow(), Some("1:abc="));
        assert_eq!(network["community_id"], "1:abc=");
    }

    #[test]
    fn login_user_and_list_hits() {
        let enrichment = EnrichmentInfo {
            tor_exit: true,
            reputation: Some(ReputationInfo {
                classification: Classification::Malicious,
                name: Some("c2".to_owned()),
                tags: vec!["botnet".to_owned()],
            }),
            lists: vec!["vpn".to_owned()],
            trusted: true,
        };
        let ev = testing::login(testing::T0, "203.0.113.7", enrichment);
        let v = encode(&Record::Event(ev));
        assert_eq!(v["event"]["category"], json!(["authentication", "session"]));
        assert_eq!(v["event"]["outcome"], "success");
        assert_eq!(v["user"], json!({"id": "1001", "name": "alice"}));
        assert_eq!(v["source"]["ip"], "203.0.113.7");
        assert_eq!(v["network"]["direction"], "ingress");
        let hits = v["threat"]["enrichments"].as_array().unwrap();
        assert_eq!(hits.len(), 3);
        assert_eq!(hits[0]["matched"]["field"], "source.ip");
        assert_eq!(hits[0]["indicator"]["type"], "ipv4-addr");
        assert_eq!(hits[1]["indicator"]["name"], "c2");
        assert_eq!(hits[1]["indicator"]["description"], "malicious (botnet)");
        assert_eq!(hits[2]["indicator"]["provider"], "vpn");
        assert_eq!(v["labels"]["trusted_network"], "true");
        assert_eq!(v["labels"]["login_method"], "publickey");
        assert_eq!(v["labels"]["login_command"], "bash -c id");
    }

    #[test]
    fn alert_has_rule_severity_and_its_own_labels() {
        let ev = testing::event(EventType::Exec, testing::T0, testing::python(), vec![]);
        let verdict = Verdict {
            rule: RuleId::WebserverShell,
            severity: Severity::High,
            title: "shell".to_owned(),
            dedup: "webserver_shell:x".to_owned(),
            shell_match: Some(crate::record::MatchKind::Content),
            web_server_via: Some(crate::record::WebServerVia::Lineage),
        };
        let v = encode(&Record::Alert(AlertRecord::new(&ev, verdict, 0, 1)));
        assert_eq!(v["event"]["kind"], "alert");
        assert_eq!(v["event"]["severity"], 4);
        assert_eq!(v["event"]["dataset"], "monitor.alert");
        assert_eq!(v["rule"]["id"], "webserver_shell");
        assert_eq!(v["message"], "shell");
        assert_eq!(v["labels"]["shell_match"], "content");
        assert_eq!(v["labels"]["web_server_via"], "lineage");
        assert_eq!(v["labels"]["events_lost"], "1");
        assert_eq!(v["labels"]["suppressed"], "0");
    }

    #[test]
    fn labels_flatten_paths_and_stringify() {
        let mut out = BTreeMap::new();
        flatten(
            "",
            &json!({"events": {"connect": 3}, "lists": [{"source": "list:vpn"}], "x": null, "ok": true}),
            &mut out,
        );
        assert_eq!(
            out,
            BTreeMap::from([
                ("events_connect".to_owned(), "3".to_owned()),
                ("lists_0_source".to_owned(), "list:vpn".to_owned()),
                ("ok".to_owned(), "true".to_owned()),
            ])
        );
    }
}
