//! Event records and the values they share with alerts: the process, its lineage and the socket.

use std::{
    fmt,
    net::IpAddr,
    ops::Deref,
    sync::{Arc, OnceLock},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use super::is_false;
pub use crate::iplist::Classification;

/// Most arguments kept in `process.argv`; more set `argv_truncated`.
pub const ARGV_MAX: usize = 32;
/// Most ancestors listed in `ancestry` (parent first, up to pid 1).
pub const ANCESTRY_MAX: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    Listen,
    Connect,
    /// An inbound TCP connection accepted on a listening socket.
    Accept,
    Exec,
    Exit,
    /// A successful SSH login (docs/login.md).
    Login,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Listen => "listen",
            Self::Connect => "connect",
            Self::Accept => "accept",
            Self::Exec => "exec",
            Self::Exit => "exit",
            Self::Login => "login",
        }
    }
}

/// `{"type":"event", ...}` (the tag is [`super::Record`]'s).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub event: EventType,
    /// Wall clock, RFC 3339 with nanoseconds, UTC (`2026-11-23T05:00:00.123456789Z`).
    pub time: String,
    pub host: String,
    pub process: ProcessInfo,
    /// exec: the path the kernel executed (may be a symlink, relative, or `/dev/fd/N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// exit: the exit status (as `wait(2)` encodes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    /// listen / connect / accept, and login (the connection it came in on); `null` otherwise.
    pub socket: Option<SocketInfo>,
    /// The flow's Community ID v1 (`1:` and 28 base64 characters), the id Zeek's `conn.log` and
    /// Suricata's EVE give the same flow: connect, accept and login records whose socket names
    /// the whole 5-tuple (docs/alerts.md says when it does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_id: Option<String>,
    /// login: who logged in, how, and what the session ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<LoginInfo>,
    /// What the offline lists know of the remote address (every record with one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrichment: Option<EnrichmentInfo>,
    /// Parent first, up to pid 1 (at most [`ANCESTRY_MAX`]). Recorded with every event so that a
    /// replay judges lineage exactly as the live daemon did.
    #[serde(default)]
    pub ancestry: Ancestry,
    /// The nearest web server in the process's lineage, at any depth (not capped like
    /// `ancestry`): the process itself when its program is one, else a program it replaced by
    /// exec (php-fpm running `os.execv("/bin/sh")`), else the nearest ancestor that was one —
    /// even when intermediate processes exited long ago or the process was reparented.
    /// Absent when there is none (and in recordings older than the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_server: Option<WebServerInfo>,
    /// listen only: the socket was already listening when the monitor started (start-up scan).
    #[serde(default, skip_serializing_if = "is_false")]
    pub pre_existing: bool,
    /// What the process's program was recognised as by file or content rather than by its
    /// path (a copy of bash named `/tmp/.x`, a shell run from a memfd or through the dynamic
    /// loader). Absent when nothing was (path matches are the policy's globs, re-judged from
    /// the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<ProgramIdentity>,
    /// The nearest shell or egress tool (interpreter, nc …) at or above the process and below
    /// its nearest web server, as the daemon tracked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_tool: Option<ToolInfo>,
    /// The same id for every record under one web-server process tree (or, with no lineage,
    /// one tree of a web server user's processes): a reader groups an attack's alerts by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}

impl EventRecord {
    /// An event about `process` with no socket, lineage or exec detail yet: the one constructor
    /// every event record starts from (live events, the start-up baseline, tests).
    pub fn new(event: EventType, time: String, host: String, process: ProcessInfo) -> Self {
        Self {
            event,
            time,
            host,
            process,
            filename: None,
            exit_code: None,
            socket: None,
            community_id: None,
            login: None,
            enrichment: None,
            ancestry: Ancestry::default(),
            web_server: None,
            pre_existing: false,
            program: None,
            egress_tool: None,
            incident: None,
        }
    }
}

/// The process an event or alert is about.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// Thread-group id (what `ps` shows).
    pub pid: u32,
    pub ppid: u32,
    /// Real uid: who started the process.
    pub uid: u32,
    /// Effective uid: whose privileges it runs with (a setuid-root program run by uid 1000 has
    /// `uid` 1000 and `euid` 0). Absent when unknown (a socket nobody owns, recordings older
    /// than the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub euid: Option<u32>,
    pub gid: u32,
    /// User name of `uid` from the passwd database, `null` when unknown.
    pub user: Option<String>,
    pub comm: String,
    /// Executable path from the kernel's exec record or `/proc/<pid>/exe`; never from comm.
    pub exe: Option<String>,
    /// First [`ARGV_MAX`] arguments.
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub argv_truncated: bool,
    pub cgroup_id: u64,
}

/// `ancestry`: the parent first, up to pid 1. Shared rather than copied: the process table hands
/// the same list to every record of a process until the process tree around it changes, and an
/// alert shares its event's. Its JSON is made once and then copied as it is into every record
/// that carries it (an ancestry is most of an event record's bytes, and escaping its command
/// lines most of the cost of printing one).
#[derive(Clone, Default)]
pub struct Ancestry(Arc<AncestryList>);

#[derive(Default)]
struct AncestryList {
    list: Vec<Ancestor>,
    json: OnceLock<Option<Box<RawValue>>>,
}

impl Ancestry {
    pub fn new(list: Vec<Ancestor>) -> Self {
        Self(Arc::new(AncestryList {
            list,
            json: OnceLock::new(),
        }))
    }
}

impl From<Vec<Ancestor>> for Ancestry {
    fn from(list: Vec<Ancestor>) -> Self {
        Self::new(list)
    }
}

impl Deref for Ancestry {
    type Target = [Ancestor];

    fn deref(&self) -> &[Ancestor] {
        &self.0.list
    }
}

impl PartialEq for Ancestry {
    fn eq(&self, other: &Self) -> bool {
        self.0.list == other.0.list
    }
}

impl Eq for Ancestry {}

impl fmt::Debug for Ancestry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.list.fmt(f)
    }
}

impl Serialize for Ancestry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let json = self
            .0
            .json
            .get_or_init(|| serde_json::value::to_raw_value(&self.0.list).ok());
        match json {
            Some(raw) => raw.serialize(serializer),
            None => self.0.list.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Ancestry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Ancestor>::deserialize(deserializer).map(Self::new)
    }
}

/// One entry of an `ancestry` list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ancestor {
    pub pid: u32,
    pub exe: Option<String>,
    pub comm: String,
    pub argv: Vec<String>,
}

/// `web_server`: an [`Ancestor`] plus the path the kernel executed, which names script-based
/// servers (`/usr/bin/gunicorn` runs as `/usr/bin/python3.11`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebServerInfo {
    pub pid: u32,
    pub exe: Option<String>,
    /// The exec's `filename`, when the monitor saw that exec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    pub comm: String,
    pub argv: Vec<String>,
    /// How it was recognised when not by the policy's `web_servers` globs: the same file
    /// (`inode`) or content (`content`) as one of the host's web servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<MatchKind>,
}

/// How a program was recognised as a shell, web server or egress tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchKind {
    /// Its executable's path matches the policy's globs.
    Path,
    /// Its executable is the same file (inode) as one of the host's binaries.
    Inode,
    /// Its executable has the same content (SHA-256) as one of the host's binaries.
    Content,
    /// It is the dynamic loader running such a program.
    Loader,
}

/// `program`: the live verdicts on the process's program beyond its path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramIdentity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<MatchKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_server: Option<MatchKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_tool: Option<MatchKind>,
    /// The host binary it is the same file or content as (`/usr/bin/bash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_as: Option<String>,
    /// The program a dynamic loader was asked to run (`/bin/bash` for
    /// `ld-linux-x86-64.so.2 /bin/bash`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded: Option<String>,
}

impl ProgramIdentity {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// `egress_tool`: a shell or egress tool in the lineage below the web server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    pub pid: u32,
    /// The executable (the loaded program for a loader exec).
    pub exe: Option<String>,
    pub kind: ToolKind,
    pub matched: MatchKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolKind {
    Shell,
    Tool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    /// A UDP connect or send (only for processes under a web server unless `--events`).
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SocketInfo {
    pub protocol: Protocol,
    /// The socket's address family. An IPv6 socket talking to an IPv4-mapped address keeps
    /// `ipv6` here, writes the plain IPv4 address, and sets `mapped_ipv4`.
    pub family: Family,
    pub local: Endpoint,
    /// connect: the destination; listen: `null`.
    pub remote: Option<Endpoint>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub mapped_ipv4: bool,
}

/// A login's facts (`"event": "login"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginInfo {
    /// The user name of `uid` from the passwd database, `null` when unknown.
    pub user: Option<String>,
    pub uid: u32,
    /// The client, as the kernel socket has it.
    pub remote: Endpoint,
    /// The server address and port the connection came in on.
    pub local: Endpoint,
    pub sshd: SshdPids,
    /// argv of the first program the session ran; `null` for sessions that ran none (`-N`,
    /// internal-sftp) or before it ran one.
    pub command: Option<Vec<String>>,
    /// The session's terminal (`pts/0`), `null` without one.
    pub tty: Option<String>,
    pub method: LoginMethod,
}

/// The SSH server processes of a login.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshdPids {
    /// The listener that accepted the connection.
    pub listener: u32,
    /// The process forked for the connection (OpenSSH's monitor, `sshd: user [priv]`).
    pub session: u32,
}

/// How a login authenticated, from libpam's return values (docs/login.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoginMethod {
    Publickey,
    Password,
    KeyboardInteractive,
    /// No libpam result was seen (uprobes refused, `UsePAM no`).
    Unknown,
}

/// `enrichment`: what the offline lists say about a record's remote address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrichmentInfo {
    pub tor_exit: bool,
    pub reputation: Option<ReputationInfo>,
    /// Every named list holding the address, in the policy's order.
    pub lists: Vec<String>,
    /// In the policy's `trusted_networks`: logins from here never alert.
    pub trusted: bool,
}

/// The reputation file's verdict on the address (longest prefix).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReputationInfo {
    pub classification: Classification,
    pub name: Option<String>,
    pub tags: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}
