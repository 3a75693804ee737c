//! What the OCSF and ECS mappings derive alike from a record: the event an event or alert is
//! about ([`Subject`]), its time in milliseconds, the process's command line and parent, which
//! end of a connection is the source, and the null-free JSON both schemas want.

use std::{fmt::Write as _, net::IpAddr};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::OutputError;
use crate::record::{
    AlertRecord, Ancestor, Endpoint, EnrichmentInfo, EventRecord, EventType, LoginInfo,
    ProcessInfo, ProgramIdentity, SocketInfo, ToolInfo, WebServerInfo,
};

/// The event an event or an alert record is about: the fields the two share.
pub struct Subject<'a> {
    pub kind: EventType,
    pub time: &'a str,
    pub host: &'a str,
    pub process: &'a ProcessInfo,
    pub filename: Option<&'a str>,
    pub exit_code: Option<u32>,
    pub socket: Option<&'a SocketInfo>,
    pub login: Option<&'a LoginInfo>,
    pub enrichment: Option<&'a EnrichmentInfo>,
    pub ancestry: &'a [Ancestor],
    pub web_server: Option<&'a WebServerInfo>,
    pub pre_existing: bool,
    pub program: Option<&'a ProgramIdentity>,
    pub egress_tool: Option<&'a ToolInfo>,
    pub incident: Option<&'a str>,
}

impl<'a> From<&'a EventRecord> for Subject<'a> {
    fn from(e: &'a EventRecord) -> Self {
        Self {
            kind: e.event,
            time: &e.time,
            host: &e.host,
            process: &e.process,
            filename: e.filename.as_deref(),
            exit_code: e.exit_code,
            socket: e.socket.as_ref(),
            login: e.login.as_ref(),
            enrichment: e.enrichment.as_ref(),
            ancestry: &e.ancestry,
            web_server: e.web_server.as_ref(),
            pre_existing: e.pre_existing,
            program: e.program.as_ref(),
            egress_tool: e.egress_tool.as_ref(),
            incident: e.incident.as_deref(),
        }
    }
}

impl<'a> From<&'a AlertRecord> for Subject<'a> {
    fn from(a: &'a AlertRecord) -> Self {
        Self {
            kind: a.event,
            time: &a.time,
            host: &a.host,
            process: &a.process,
            filename: a.filename.as_deref(),
            exit_code: None,
            socket: a.socket.as_ref(),
            login: a.login.as_ref(),
            enrichment: a.enrichment.as_ref(),
            ancestry: &a.ancestry,
            web_server: a.web_server.as_ref(),
            pre_existing: a.pre_existing,
            program: a.program.as_ref(),
            egress_tool: a.egress_tool.as_ref(),
            incident: a.incident.as_deref(),
        }
    }
}

/// Which end of a connection is which.
pub struct Flow {
    /// Who opened it: the local end of a connect, the client of an accept or a login.
    pub source: Option<Endpoint>,
    /// Who was connected to: the remote end of a connect, the local end of an accept or a
    /// login, the listening address of a listen.
    pub destination: Option<Endpoint>,
    /// The remote address, the one the enrichment lists were asked about.
    pub remote: Option<Endpoint>,
    /// Seen from this host: `Some(true)` inbound (accept, login, listen), `Some(false)`
    /// outbound (connect), `None` for records without a socket.
    pub inbound: Option<bool>,
}

impl Subject<'_> {
    pub fn flow(&self) -> Flow {
        if let Some(login) = self.login {
            return Flow {
                source: Some(login.remote),
                destination: Some(login.local),
                remote: Some(login.remote),
                inbound: Some(true),
            };
        }
        let Some(socket) = self.socket else {
            return Flow {
                source: None,
                destination: None,
                remote: None,
                inbound: None,
            };
        };
        match self.kind {
            EventType::Connect => Flow {
                source: Some(socket.local),
                destination: socket.remote,
                remote: socket.remote,
                inbound: Some(false),
            },
            _ => Flow {
                source: socket.remote,
                destination: Some(socket.local),
                remote: socket.remote,
                inbound: Some(true),
            },
        }
    }

    /// The parent's ancestry entry, when the first ancestor is the parent.
    pub fn parent(&self) -> Option<&Ancestor> {
        self.ancestry.first().filter(|a| a.pid == self.process.ppid)
    }
}

/// Milliseconds since the epoch of a record's time (RFC 3339).
pub fn epoch_ms(time: &str) -> Result<i64, OutputError> {
    time.parse::<jiff::Timestamp>()
        .map(jiff::Timestamp::as_millisecond)
        .map_err(|_| OutputError::Time(time.to_owned()))
}

/// A process's exit code from its `wait(2)` status: the code it exited with, or 128 plus the
/// signal that killed it (the shell's convention).
pub fn exit_code(status: u32) -> i64 {
    match status & 0x7f {
        0 => i64::from((status >> 8) & 0xff),
        signal => 128 + i64::from(signal),
    }
}

/// The arguments as one command line, as `ps` shows them; `None` without any.
pub fn command_line(argv: &[String]) -> Option<String> {
    (!argv.is_empty()).then(|| argv.join(" "))
}

/// The last component of a path (`/usr/bin/bash` → `bash`).
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
        || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
}

/// An alert's identity: the same alert (host, time, dedup key) always gets the same one, so a
/// replay of a recording names its findings as the live daemon did.
pub fn alert_uid(alert: &AlertRecord) -> String {
    let mut hash = Sha256::new();
    for part in [&alert.host, &alert.time, &alert.dedup] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.finalize()[..16]
        .iter()
        .fold(String::with_capacity(32), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// Removes every `null` (and every object left empty by that) from a mapped record: both
/// schemas describe an absent value by leaving the field out.
pub fn prune(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| {
                prune(v);
                !(v.is_null() || v.as_object().is_some_and(serde_json::Map::is_empty))
            });
        }
        Value::Array(items) => items.iter_mut().for_each(prune),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{record::EventType, testing};

    #[test]
    fn connect_goes_out_accept_and_login_come_in() {
        let connect = testing::connect(
            testing::T0,
            testing::python(),
            vec![testing::systemd()],
            "198.51.100.9",
            4444,
        );
        let flow = Subject::from(&connect).flow();
        assert_eq!(flow.source.unwrap().port, 40000);
        assert_eq!(flow.destination.unwrap().port, 4444);
        assert_eq!(flow.remote.unwrap().ip, testing::ip("198.51.100.9"));
        assert_eq!(flow.inbound, Some(false));

        let mut accept = connect.clone();
        accept.event = EventType::Accept;
        let flow = Subject::from(&accept).flow();
        assert_eq!(flow.source.unwrap().ip, testing::ip("198.51.100.9"));
        assert_eq!(flow.destination.unwrap().ip, testing::ip("10.0.0.5"));
        assert_eq!(flow.inbound, Some(true));

        let login = testing::login(testing::T0, "203.0.113.7", EnrichmentInfo::default());
        let flow = Subject::from(&login).flow();
        assert_eq!(flow.source.unwrap().ip, testing::ip("203.0.113.7"));
        assert_eq!(flow.destination.unwrap().port, 22);

        let listen = testing::listen(testing::T0, testing::python(), "0.0.0.0", 8080);
        let flow = Subject::from(&listen).flow();
        assert!(flow.source.is_none() && flow.remote.is_none());
        assert_eq!(flow.destination.unwrap().port, 8080);

        let exec = testing::event(EventType::Exec, testing::T0, testing::python(), vec![]);
        assert!(Subject::from(&exec).flow().inbound.is_none());
    }

    #[test]
    fn times_nulls_and_names() {
        assert_eq!(epoch_ms("1970-01-01T00:00:01.999999999Z").unwrap(), 1999);
        assert!(matches!(epoch_ms("yesterday"), Err(OutputError::Time(_))));
        assert_eq!(exit_code(0), 0);
        assert_eq!(exit_code(1 << 8), 1);
        assert_eq!(exit_code(9), 137, "SIGKILL");
        assert_eq!(exit_code(0xb | 0x80), 139, "SIGSEGV with a core dump");
        assert_eq!(basename("/usr/bin/bash"), "bash");
        assert_eq!(basename("bash"), "bash");
        assert_eq!(command_line(&[]), None);
        assert!(is_loopback(testing::ip("::ffff:127.0.0.1")));
        assert!(!is_loopback(testing::ip("10.0.0.1")));
        let mut v = json!({"a": null, "b": {"c": null}, "d": [{"e": null, "f": 1}], "g": 0});
        prune(&mut v);
        assert_eq!(v, json!({"d": [{"f": 1}], "g": 0}));
    }
}
