//! Alert records: the event's envelope plus a rule's verdict.

use serde::{Deserialize, Serialize};

use super::event::{
    Ancestry, EnrichmentInfo, EventRecord, EventType, LoginInfo, MatchKind, ProcessInfo,
    ProgramIdentity, SocketInfo, ToolInfo, WebServerInfo,
};

/// The rule ids: part of the output contract (docs/alerts.md), never renamed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleId {
    UnexpectedListen,
    WebserverEgress,
    WebserverShell,
    SshLoginTor,
    SshLoginMaliciousIp,
    SshLoginListed,
    EgressListedIp,
    InboundTor,
}

impl RuleId {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnexpectedListen => "unexpected_listen",
            Self::WebserverEgress => "webserver_egress",
            Self::WebserverShell => "webserver_shell",
            Self::SshLoginTor => "ssh_login_tor",
            Self::SshLoginMaliciousIp => "ssh_login_malicious_ip",
            Self::SshLoginListed => "ssh_login_listed",
            Self::EgressListedIp => "egress_listed_ip",
            Self::InboundTor => "inbound_tor",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// `{"type":"alert", ...}` (the tag is [`super::Record`]'s).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    pub rule: RuleId,
    pub severity: Severity,
    pub title: String,
    /// The event's time (RFC 3339, UTC).
    pub time: String,
    pub host: String,
    /// The kind of event that raised the alert.
    pub event: EventType,
    pub dedup: String,
    pub process: ProcessInfo,
    /// exec: the path the kernel executed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Parent first, up to pid 1.
    pub ancestry: Ancestry,
    /// The event's `web_server`: the nearest web server in the lineage, at any depth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_server: Option<WebServerInfo>,
    pub socket: Option<SocketInfo>,
    /// The event's `community_id`: the flow's Community ID, to find it in Zeek or Suricata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
    /// The event's `login`, for the login rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginInfo>,
    /// The event's `enrichment`: what the lists say of the remote address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrichment: Option<EnrichmentInfo>,
    pub pre_existing: bool,
    /// The event's `program`: how its program was recognised beyond its path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<ProgramIdentity>,
    /// The event's `egress_tool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_tool: Option<ToolInfo>,
    /// `webserver_shell`: how the shell was recognised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell_match: Option<MatchKind>,
    /// The web-server rules: how the process was found to be under a web server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_server_via: Option<WebServerVia>,
    /// The event's `incident`: the same for every alert under one web-server process tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// Repeats of this dedup key held back since the previous alert with it.
    pub suppressed: u64,
    /// Kernel ring-buffer drops since the previous alert (of any key).
    pub events_lost: u64,
}

/// What a rule decided about an event, before dedup: the alert's own fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub rule: RuleId,
    pub severity: Severity,
    pub title: String,
    pub dedup: String,
    pub shell_match: Option<MatchKind>,
    pub web_server_via: Option<WebServerVia>,
}

/// How a process was found to be under a web server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebServerVia {
    /// It is, replaced or descends from a web server.
    Lineage,
    /// It runs as one of the policy's `web_server_users`.
    User,
}

impl AlertRecord {
    /// The alert for `event`: the event's envelope, the verdict, and the dedup and loss counts.
    pub fn new(event: &EventRecord, verdict: Verdict, suppressed: u64, events_lost: u64) -> Self {
        Self {
            rule: verdict.rule,
            severity: verdict.severity,
            title: verdict.title,
            time: event.time.clone(),
            host: event.host.clone(),
            event: event.event,
            dedup: verdict.dedup,
            process: event.process.clone(),
            filename: event.filename.clone(),
            ancestry: event.ancestry.clone(),
            web_server: event.web_server.clone(),
            socket: event.socket.clone(),
            community_id: event.community_id.clone(),
            login: event.login.clone(),
            enrichment: event.enrichment.clone(),
            pre_existing: event.pre_existing,
            program: event.program.clone(),
            egress_tool: event.egress_tool.clone(),
            shell_match: verdict.shell_match,
            web_server_via: verdict.web_server_via,
            incident: event.incident.clone(),
            suppressed,
            events_lost,
        }
    }
}
