//! OCSF 1.8.0 (<https://schema.ocsf.io/1.8.0>), with the `host` and `datetime` profiles: listen,
//! connect and accept as Network Activity (4001), exec and exit as Process Activity (1007), a
//! login as Authentication (3002), an alert as a Detection Finding (2004), a status record as
//! Application Lifecycle (6002). What OCSF has no attribute for goes into `unmapped`. The
//! mapping, field by field, is docs/formats.md; tests/schemas/ocsf holds the classes' JSON
//! Schemas every mapped record is checked against.

use serde_json::{Map, Value, json};

use super::{
    Encode, OutputError,
    fields::{self, Flow, Subject},
};
use crate::record::{
    AlertRecord, Ancestor, EnrichmentInfo, EventRecord, EventType, LoginMethod, ProcessInfo,
    Protocol, Record, Severity, SocketInfo, Status, StatusRecord,
};

/// The OCSF release the records follow (`metadata.version`).
pub const VERSION: &str = "1.8.0";
/// The profiles applied (`metadata.profiles`).
pub const PROFILES: [&str; 2] = ["datetime", "host"];

/// OCSF JSON lines.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ocsf;

impl Encode for Ocsf {
    fn encode(&self, record: &Record, line: &mut Vec<u8>) -> Result<(), OutputError> {
        let mut value = match record {
            Record::Event(e) => event(e)?,
            Record::Alert(a) => alert(a)?,
            Record::Status(s) => status(s)?,
        };
        fields::prune(&mut value);
        serde_json::to_writer(&mut *line, &value)?;
        Ok(())
    }
}

/// A class and the category it belongs to, with their captions.
struct Class {
    uid: u32,
    name: &'static str,
    category_uid: u32,
    category_name: &'static str,
}

const NETWORK_ACTIVITY: Class = Class {
    uid: 4001,
    name: "Network Activity",
    category_uid: 4,
    category_name: "Network Activity",
};
const PROCESS_ACTIVITY: Class = Class {
    uid: 1007,
    name: "Process Activity",
    category_uid: 1,
    category_name: "System Activity",
};
const AUTHENTICATION: Class = Class {
    uid: 3002,
    name: "Authentication",
    category_uid: 3,
    category_name: "Identity & Access Management",
};
const DETECTION_FINDING: Class = Class {
    uid: 2004,
    name: "Detection Finding",
    category_uid: 2,
    category_name: "Findings",
};
const APPLICATION_LIFECYCLE: Class = Class {
    uid: 6002,
    name: "Application Lifecycle",
    category_uid: 6,
    category_name: "Application Activity",
};

/// `severity_id` and its caption.
const INFORMATIONAL: (u32, &str) = (1, "Informational");

fn severity(s: Severity) -> (u32, &'static str) {
    match s {
        Severity::Info => INFORMATIONAL,
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// The attributes every record has: classification, time, severity, device and metadata.
/// `log_name` is the native record type, `event_code` the native event kind or rule id.
fn base(
    class: &Class,
    activity: (u32, &str),
    severity: (u32, &str),
    time: &str,
    host: &str,
    log_name: &str,
    event_code: &str,
) -> Result<Map<String, Value>, OutputError> {
    let (activity_id, activity_name) = activity;
    let value = json!({
        "class_uid": class.uid,
        "class_name": class.name,
        "category_uid": class.category_uid,
        "category_name": class.category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": u64::from(class.uid) * 100 + u64::from(activity_id),
        "type_name": format!("{}: {activity_name}", class.name),
        "severity_id": severity.0,
        "severity": severity.1,
        "time": fields::epoch_ms(time)?,
        "time_dt": time,
        "timezone_offset": 0,
        "device": {
            "hostname": host,
            "type_id": 0,
            "type": "Unknown",
            "os": { "name": "Linux", "type_id": 200, "type": "Linux" },
        },
        "metadata": {
            "version": VERSION,
            "profiles": PROFILES,
            "product": {
                "name": "monitor",
                "vendor_name": "monitor",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "log_name": log_name,
            "event_code": event_code,
        },
    });
    match value {
        Value::Object(map) => Ok(map),
        _ => unreachable!("json! of an object literal is an object"),
    }
}

/// Adds `more`'s attributes to `record` (objects merge one level deep: `metadata`).
fn extend(mut record: Map<String, Value>, more: Value) -> Value {
    if let Value::Object(more) = more {
        for (key, value) in more {
            match (record.get_mut(&key), value) {
                (Some(Value::Object(have)), Value::Object(add)) => have.extend(add),
                (_, value) => {
                    record.insert(key, value);
                }
            }
        }
    }
    Value::Object(record)
}

fn event(e: &EventRecord) -> Result<Value, OutputError> {
    let s = Subject::from(e);
    let kind = e.event.as_str();
    let flow = s.flow();
    Ok(match e.event {
        EventType::Listen | EventType::Connect | EventType::Accept => {
            let activity = if e.event == EventType::Listen {
                (7, "Listen")
            } else {
                (1, "Open")
            };
            let record = base(
                &NETWORK_ACTIVITY,
                activity,
                INFORMATIONAL,
                &e.time,
                &e.host,
                "event",
                kind,
            )?;
            extend(
                record,
                json!({
                    "src_endpoint": flow.source.map(endpoint),
                    "dst_endpoint": flow.destination.map(endpoint),
                    "connection_info": e.socket.as_ref().map(|so| connection_info(so, &flow, None)),
                    "is_src_dst_assignment_known": true,
                    "actor": actor(&s),
                    "enrichments": enrichments(s.enrichment, &flow, ""),
                    "metadata": { "correlation_uid": s.incident },
                    "unmapped": unmapped(&s),
                }),
            )
        }
        EventType::Exec | EventType::Exit => {
            let exec = e.event == EventType::Exec;
            let activity = if exec {
                (1, "Launch")
            } else {
                (2, "Terminate")
            };
            let record = base(
                &PROCESS_ACTIVITY,
                activity,
                INFORMATIONAL,
                &e.time,
                &e.host,
                "event",
                kind,
            )?;
            // exec: the parent launched it; exit: the kernel reports it from the exiting
            // process itself.
            let actor = if exec {
                json!({ "process": parent_process(s.process.ppid, s.parent()) })
            } else {
                json!({ "process": process(s.process, s.parent(), s.ancestry) })
            };
            extend(
                record,
                json!({
                    "process": process(s.process, s.parent(), s.ancestry),
                    "actor": actor,
                    "launch_type_id": exec.then_some(3),
                    "launch_type": exec.then_some("Exec"),
                    "exit_code": e.exit_code.map(fields::exit_code),
                    "metadata": { "correlation_uid": s.incident },
                    "unmapped": unmapped(&s),
                }),
            )
        }
        EventType::Login => {
            let record = base(
                &AUTHENTICATION,
                (1, "Logon"),
                INFORMATIONAL,
                &e.time,
                &e.host,
                "event",
                kind,
            )?;
            let login = e.login.as_ref();
            let (auth_id, auth_name) = match login.map(|l| l.method) {
                Some(LoginMethod::Publickey) => (99, "publickey"),
                Some(LoginMethod::Password) => (99, "password"),
                Some(LoginMethod::KeyboardInteractive) => (99, "keyboard-interactive"),
                Some(LoginMethod::Unknown) | None => (0, "Unknown"),
            };
            let who = login
                .and_then(|l| l.user.clone())
                .or_else(|| login.map(|l| format!("uid {}", l.uid)))
                .unwrap_or_default();
            let from = flow.source.map(|f| f.ip.to_string()).unwrap_or_default();
            extend(
                record,
                json!({
                    "message": format!("{who} logged in over SSH from {from}"),
                    "status_id": 1,
                    "status": "Success",
                    "user": login.map(|l| user(l.uid, l.user.as_deref())),
                    "src_endpoint": flow.source.map(endpoint),
                    "dst_endpoint": flow.destination.map(endpoint),
                    "service": { "name": "sshd" },
                    "is_remote": true,
                    "logon_type_id": 10,
                    "logon_type": "Remote Interactive",
                    "auth_protocol_id": auth_id,
                    "auth_protocol": auth_name,
                    "session": {
                        "is_remote": true,
                        "terminal": login.and_then(|l| l.tty.as_deref()),
                    },
                    "actor": actor(&s),
                    "enrichments": enrichments(s.enrichment, &flow, ""),
                    "metadata": { "correlation_uid": s.incident },
                    "unmapped": unmapped(&s),
                }),
            )
        }
    })
}

fn alert(a: &AlertRecord) -> Result<Value, OutputError> {
    let s = Subject::from(a);
    let flow = s.flow();
    let time_ms = fields::epoch_ms(&a.time)?;
    let record = base(
        &DETECTION_FINDING,
        (1, "Create"),
        severity(a.severity),
        &a.time,
        &a.host,
        "alert",
        a.rule.as_str(),
    )?;
    let mut unmapped = unmapped(&s);
    if let Value::Object(map) = &mut unmapped {
        map.extend([
            ("event".to_owned(), json!(a.event.as_str())),
            ("dedup".to_owned(), json!(a.dedup)),
            ("suppressed".to_owned(), json!(a.suppressed)),
            ("events_lost".to_owned(), json!(a.events_lost)),
            ("shell_match".to_owned(), json!(a.shell_match)),
            ("web_server_via".to_owned(), json!(a.web_server_via)),
        ]);
    }
    Ok(extend(
        record,
        json!({
            "message": a.title,
            "status_id": 1,
            "status": "New",
            "is_alert": true,
            "finding_info": {
                "uid": fields::alert_uid(a),
                "title": a.title,
                "created_time": time_ms,
                "analytic": {
                    "uid": a.rule.as_str(),
                    "name": a.rule.as_str(),
                    "type_id": 1,
                    "type": "Rule",
                },
            },
            "evidences": [{
                "process": process(s.process, s.parent(), s.ancestry),
                "src_endpoint": flow.source.map(endpoint),
                "dst_endpoint": flow.destination.map(endpoint),
                "connection_info": a.socket.as_ref().map(|so| connection_info(so, &flow, None)),
                "user": a.login.as_ref().map(|l| user(l.uid, l.user.as_deref())),
            }],
            "enrichments": enrichments(s.enrichment, &flow, "evidences."),
            "metadata": { "correlation_uid": s.incident },
            "unmapped": unmapped,
        }),
    ))
}

fn status(s: &StatusRecord) -> Result<Value, OutputError> {
    let activity = match s.status {
        Status::Started => (3, "Start"),
        Status::Stopped => (4, "Stop"),
        Status::Running => (99, "Running"),
        Status::Reloaded => (99, "Reloaded"),
    };
    let name = serde_json::to_value(s.status)?;
    let name = name.as_str().unwrap_or_default();
    let record = base(
        &APPLICATION_LIFECYCLE,
        activity,
        INFORMATIONAL,
        &s.time,
        &s.host,
        "status",
        name,
    )?;
    // Everything but what the mapped attributes carry: the counts, as they are.
    let mut rest = serde_json::to_value(s)?;
    if let Value::Object(map) = &mut rest {
        for mapped in ["status", "time", "host", "version"] {
            map.remove(mapped);
        }
    }
    Ok(extend(
        record,
        json!({
            "message": format!("monitor {name}"),
            "status_id": 1,
            "status": "Success",
            "app": { "name": "monitor", "vendor_name": "monitor", "version": s.version },
            "unmapped": rest,
        }),
    ))
}

/// The process as OCSF's `process`: its parent from the first ancestor when that is it, and
/// the whole `ancestry`.
fn process(p: &ProcessInfo, parent: Option<&Ancestor>, ancestry: &[Ancestor]) -> Value {
    json!({
        "pid": p.pid,
        "name": p.comm,
        "path": p.exe,
        "cmd_line": fields::command_line(&p.argv),
        "file": p.exe.as_deref().map(file),
        "user": user(p.uid, p.user.as_deref()),
        "parent_process": parent_process(p.ppid, parent),
        "ancestry": (!ancestry.is_empty()).then(|| ancestry.iter().map(entity).collect::<Vec<_>>()),
    })
}

/// The parent: all the ancestry says of it, or its pid alone.
fn parent_process(ppid: u32, parent: Option<&Ancestor>) -> Value {
    match parent {
        Some(a) => json!({
            "pid": a.pid,
            "name": a.comm,
            "path": a.exe,
            "cmd_line": fields::command_line(&a.argv),
            "file": a.exe.as_deref().map(file),
        }),
        None => json!({ "pid": ppid }),
    }
}

fn entity(a: &Ancestor) -> Value {
    json!({
        "pid": a.pid,
        "name": a.comm,
        "path": a.exe,
        "cmd_line": fields::command_line(&a.argv),
    })
}

fn file(path: &str) -> Value {
    json!({
        "name": fields::basename(path),
        "path": path,
        "type_id": 1,
        "type": "Regular File",
    })
}

fn user(uid: u32, name: Option<&str>) -> Value {
    json!({ "uid": uid.to_string(), "name": name })
}

/// The process behind a network event, login or alert, and its user.
fn actor(s: &Subject<'_>) -> Value {
    json!({
        "process": process(s.process, s.parent(), s.ancestry),
        "user": user(s.process.uid, s.process.user.as_deref()),
    })
}

fn endpoint(e: crate::record::Endpoint) -> Value {
    json!({ "ip": e.ip.to_string(), "port": e.port })
}

/// `community_id`: the Community ID flow hash, when the record carries one (it maps to
/// `community_uid`).
fn connection_info(socket: &SocketInfo, flow: &Flow, community_id: Option<&str>) -> Value {
    let (protocol, number) = match socket.protocol {
        Protocol::Tcp => ("tcp", 6),
        Protocol::Udp => ("udp", 17),
    };
    let (version_id, version) = match socket.family {
        crate::record::Family::Ipv4 => (4, "Internet Protocol version 4 (IPv4)"),
        crate::record::Family::Ipv6 => (6, "Internet Protocol version 6 (IPv6)"),
    };
    // Intra-device when the other end (a listener's own address) is loopback.
    let local = flow
        .remote
        .or(flow.destination)
        .is_some_and(|e| fields::is_loopback(e.ip));
    let (direction_id, direction) = match flow.inbound {
        _ if local => (4, "Local"),
        Some(true) => (1, "Inbound"),
        Some(false) => (2, "Outbound"),
        None => (0, "Unknown"),
    };
    json!({
        "protocol_name": protocol,
        "protocol_num": number,
        "protocol_ver_id": version_id,
        "protocol_ver": version,
        "direction_id": direction_id,
        "direction": direction,
        "community_uid": community_id,
    })
}

/// What the lists know of the remote address, one enrichment per list that holds it; `None`
/// when none does. `prefix` is where the endpoints sit (`evidences.` in a finding).
fn enrichments(e: Option<&EnrichmentInfo>, flow: &Flow, prefix: &str) -> Option<Vec<Value>> {
    let (e, remote) = (e?, flow.remote?);
    let side = if flow.inbound == Some(true) {
        "src_endpoint"
    } else {
        "dst_endpoint"
    };
    let name = format!("{prefix}{side}.ip");
    let value = remote.ip.to_string();
    let hit = |kind: &str, provider: &str, short_desc: String, data: Value| {
        json!({
            "name": name,
            "value": value,
            "type": kind,
            "provider": provider,
            "short_desc": short_desc,
            "data": data,
        })
    };
    let mut out = Vec::new();
    if e.tor_exit {
        out.push(hit(
            "tor_exit",
            "tor_exits",
            "Tor exit node".to_owned(),
            json!({ "tor_exit": true }),
        ));
    }
    if let Some(r) = &e.reputation {
        let what = r.classification.as_str();
        out.push(hit(
            "reputation",
            "reputation",
            match &r.name {
                Some(n) => format!("{what}: {n}"),
                None => what.to_owned(),
            },
            json!(r),
        ));
    }
    for list in &e.lists {
        out.push(hit(
            "list",
            list,
            format!("in list {list}"),
            json!({ "list": list }),
        ));
    }
    if e.trusted {
        out.push(hit(
            "trusted_network",
            "trusted_networks",
            "in trusted_networks".to_owned(),
            json!({ "trusted": true }),
        ));
    }
    (!out.is_empty()).then_some(out)
}

/// What OCSF has no attribute for, under the native names.
fn unmapped(s: &Subject<'_>) -> Value {
    json!({
        "process": {
            "gid": s.process.gid,
            "euid": s.process.euid,
            "cgroup_id": s.process.cgroup_id,
            "argv_truncated": s.process.argv_truncated.then_some(true),
        },
        "filename": s.filename,
        "exit_status": s.exit_code,
        "mapped_ipv4": s.socket.is_some_and(|so| so.mapped_ipv4).then_some(true),
        "pre_existing": s.pre_existing.then_some(true),
        "web_server": s.web_server,
        "program": s.program,
        "egress_tool": s.egress_tool,
        "login": s.login.map(|l| json!({
            "sshd": l.sshd,
            "command": l.command,
            "method": l.method,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        record::{Classification, ReputationInfo, Verdict},
        testing,
    };

    fn encode(record: &Record) -> Value {
        let mut line = Vec::new();
        Ocsf.encode(record, &mut line).unwrap();
        serde_json::from_slice(&line).unwrap()
    }

    #[test]
    fn connect_is_an_outbound_network_open_by_its_process() {
        let ev = testing::connect(
            testing::T0,
            testing::python(),
            vec![testing::fpm_worker(), testing::systemd()],
            "198.51.100.9",
            4444,
        );
        let v = encode(&Record::Event(ev));
        assert_eq!(v["class_uid"], 4001);
        assert_eq!(v["activity_id"], 1);
        assert_eq!(v["type_uid"], 400_101);
        assert_eq!(v["type_name"], "Network Activity: Open");
        assert_eq!(v["time"], 1_795_410_000_000_i64);
        assert_eq!(v["time_dt"], testing::T0);
        assert_eq!(v["src_endpoint"], json!({"ip": "10.0.0.5", "port": 40000}));
        assert_eq!(
            v["dst_endpoint"],
            json!({"ip": "198.51.100.9", "port": 4444})
        );
        assert_eq!(v["connection_info"]["direction_id"], 2);
        assert_eq!(v["connection_info"]["protocol_num"], 6);
        let process = &v["actor"]["process"];
        assert_eq!(process["pid"], 4000);
        assert_eq!(process["cmd_line"], "python3 -m http.server 4444");
        assert_eq!(process["file"]["name"], "python3.11");
        assert_eq!(process["parent_process"]["pid"], 901);
        assert_eq!(process["parent_process"]["name"], "php-fpm8.2");
        assert_eq!(process["ancestry"][1]["pid"], 1);
        assert_eq!(process["user"], json!({"uid": "1000", "name": "app"}));
        assert_eq!(v["unmapped"]["process"]["gid"], 1000);
        assert_eq!(v["unmapped"]["process"]["euid"], 1000);
        assert_eq!(v["metadata"]["version"], "1.8.0");
        assert_eq!(v["metadata"]["event_code"], "connect");
        // No nulls anywhere: the schema has no null types.
        assert!(!v.to_string().contains("null"), "{v}");
    }

    #[test]
    fn listen_and_accept_come_in_and_loopback_is_local() {
        let listen = testing::listen(testing::T0, testing::python(), "127.0.0.1", 8080);
        let v = encode(&Record::Event(listen));
        assert_eq!(
            (v["activity_id"].as_u64(), v["type_uid"].as_u64()),
            (Some(7), Some(400_107))
        );
        assert_eq!(v["dst_endpoint"]["port"], 8080);
        assert!(v.get("src_endpoint").is_none());
        assert_eq!(v["connection_info"]["direction"], "Local");

        let mut accept =
            testing::connect(testing::T0, testing::python(), vec![], "203.0.113.7", 51000);
        accept.event = EventType::Accept;
        let v = encode(&Record::Event(accept));
        assert_eq!(v["src_endpoint"]["ip"], "203.0.113.7");
        assert_eq!(v["connection_info"]["direction"], "Inbound");
    }

    #[test]
    fn the_community_id_hook_fills_community_uid() {
        let ev = testing::connect(testing::T0, testing::python(), vec![], "198.51.100.9", 53);
        let s = Subject::from(&ev);
        let info = connection_info(
            ev.socket.as_ref().unwrap(),
            &s.flow(),
            Some("1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        );
        assert_eq!(info["community_uid"], "1:LQU9qZlK+B5F3KDmev6m5PMibrg=");
    }

    #[test]
    fn exec_is_launched_by_the_parent_exit_carries_the_exit_code() {
        let ev = testing::event(
            EventType::Exec,
            testing::T0,
            testing::python(),
            vec![testing::fpm_worker()],
        );
        let v = encode(&Record::Event(ev));
        assert_eq!(
            (v["class_uid"].as_u64(), v["activity_id"].as_u64()),
            (Some(1007), Some(1))
        );
        assert_eq!(v["launch_type"], "Exec");
        assert_eq!(v["actor"]["process"]["pid"], 901);
        assert_eq!(v["process"]["pid"], 4000);

        let mut ev = testing::event(EventType::Exit, testing::T0, testing::python(), vec![]);
        ev.exit_code = Some(3 << 8);
        let v = encode(&Record::Event(ev));
        assert_eq!(
            (v["activity_id"].as_u64(), v["exit_code"].as_i64()),
            (Some(2), Some(3))
        );
        assert_eq!(v["unmapped"]["exit_status"], 768);
        assert_eq!(v["actor"]["process"]["pid"], 4000);
    }

    #[test]
    fn login_is_a_remote_logon_with_its_list_hits_as_enrichments() {
        let enrichment = EnrichmentInfo {
            tor_exit: true,
            reputation: Some(ReputationInfo {
                classification: Classification::Malicious,
                name: Some("c2".to_owned()),
                tags: vec!["botnet".to_owned()],
            }),
            lists: vec!["vpn".to_owned()],
            trusted: false,
        };
        let ev = testing::login(testing::T0, "203.0.113.7", enrichment);
        let v = encode(&Record::Event(ev));
        assert_eq!(
            (v["class_uid"].as_u64(), v["activity_id"].as_u64()),
            (Some(3002), Some(1))
        );
        assert_eq!(v["user"], json!({"uid": "1001", "name": "alice"}));
        assert_eq!(v["is_remote"], true);
        assert_eq!(v["logon_type_id"], 10);
        assert_eq!(v["auth_protocol"], "publickey");
        assert_eq!(v["src_endpoint"]["ip"], "203.0.113.7");
        assert_eq!(v["dst_endpoint"]["port"], 22);
        let kinds: Vec<&str> = v["enrichments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["tor_exit", "reputation", "list"]);
        assert_eq!(v["enrichments"][0]["name"], "src_endpoint.ip");
        assert_eq!(v["enrichments"][0]["value"], "203.0.113.7");
        assert_eq!(v["enrichments"][1]["data"]["tags"], json!(["botnet"]));
        assert_eq!(v["enrichments"][2]["provider"], "vpn");
        assert_eq!(v["unmapped"]["login"]["sshd"]["listener"], 100);
    }

    #[test]
    fn alert_is_a_detection_finding_with_the_event_as_evidence() {
        let mut ev = testing::connect(
            testing::T0,
            testing::python(),
            vec![testing::fpm_worker()],
            "198.51.100.9",
            4444,
        );
        ev.incident = Some("00112233aabbccdd".to_owned());
        ev.enrichment = Some(EnrichmentInfo {
            lists: vec!["c2".to_owned()],
            ..EnrichmentInfo::default()
        });
        let verdict = Verdict {
            rule: crate::record::RuleId::WebserverEgress,
            severity: Severity::Medium,
            title: "python3 connects to 198.51.100.9:4444".to_owned(),
            dedup: "webserver_egress:x".to_owned(),
            shell_match: None,
            web_server_via: None,
        };
        let alert = AlertRecord::new(&ev, verdict, 2, 5);
        let v = encode(&Record::Alert(alert.clone()));
        assert_eq!(
            (v["class_uid"].as_u64(), v["activity_id"].as_u64()),
            (Some(2004), Some(1))
        );
        assert_eq!(
            (v["severity_id"].as_u64(), v["severity"].as_str()),
            (Some(3), Some("Medium"))
        );
        assert_eq!(v["finding_info"]["title"], alert.title);
        assert_eq!(v["finding_info"]["uid"], fields::alert_uid(&alert));
        assert_eq!(v["finding_info"]["analytic"]["uid"], "webserver_egress");
        assert_eq!(v["evidences"][0]["process"]["pid"], 4000);
        assert_eq!(v["evidences"][0]["dst_endpoint"]["port"], 4444);
        assert_eq!(v["enrichments"][0]["name"], "evidences.dst_endpoint.ip");
        assert_eq!(v["metadata"]["correlation_uid"], "00112233aabbccdd");
        assert_eq!(v["unmapped"]["suppressed"], 2);
        assert_eq!(v["unmapped"]["events_lost"], 5);
        assert_eq!(v["unmapped"]["dedup"], "webserver_egress:x");
        assert_eq!(v["is_alert"], true);
    }
}
