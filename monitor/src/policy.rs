//! The detection policy: a TOML file (`--policy FILE`) or the default compiled into the binary
//! (`default_policy.toml`, parsed through the very same code).
//!
//! Two stages, so that every mistake is reported once and the detections never re-check input:
//! 1. serde deserializes the text into `Raw*` structs (`deny_unknown_fields`, every key
//!    optional, spans kept with [`toml::Spanned`] on whatever is validated later);
//! 2. [`validate`] turns them into the typed [`Policy`]: ports and ranges checked, CIDRs parsed,
//!    globs compiled, the dedup window parsed. A key the file leaves out takes its value from the
//!    embedded default policy.
//!
//! Errors read `FILE:LINE:COLUMN: KEY: MESSAGE`, for example
//! `policy.toml:12:9: rules.unexpected_listen.allow[2].port: port 70000 out of range 1-65535`.
//! docs/policy.md documents every key.

use std::{fmt, net::IpAddr, ops::Range, path::Path, sync::LazyLock, time::Duration};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use toml::Spanned;

use crate::{
    netrange::{self, Cidr},
    record::Ancestor,
};

/// The default policy's text, compiled in.
pub const DEFAULT_POLICY_TOML: &str = include_str!("default_policy.toml");
const DEFAULT_POLICY_NAME: &str = "<embedded default policy>";

/// The validated, typed policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Repeats of a dedup key within this window are counted, not printed.
    pub dedup_window: Duration,
    /// Web servers, matched on executable paths (see [`ExeGlob`]).
    pub web_servers: Vec<ExeGlob>,
    /// Shells, matched on executable paths (busybox applets: see `detect::lineage`).
    pub shells: Vec<ExeGlob>,
    pub unexpected_listen: ListenRule,
    pub webserver_egress: EgressRule,
    pub webserver_shell: ShellRule,
}

/// What every rule has.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSettings {
    pub enabled: bool,
    pub severity: Severity,
    /// An event matching any exception raises no alert for this rule.
    pub exceptions: Vec<Exception>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ListenRule {
    pub settings: RuleSettings,
    /// Listeners bound only to 127.0.0.0/8 or ::1 are allowed.
    pub allow_loopback: bool,
    pub allow: Vec<AllowEntry>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EgressRule {
    pub settings: RuleSettings,
    pub allowed_ports: Vec<PortRange>,
    pub excluded_networks: Vec<Cidr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ShellRule {
    pub settings: RuleSettings,
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

/// Where a listener must be bound for an allow entry to cover it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindScope {
    /// Any local address (wildcard, a public address, or loopback).
    #[default]
    Any,
    /// Only 127.0.0.0/8 or ::1 (IPv4-mapped loopback included).
    Loopback,
}

/// An inclusive port range; a single port is `lo == hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// An executable pattern. Without a `/` it matches the executable's basename (`php-fpm*`);
/// with one it matches the whole path, and `*` does not cross a `/`
/// (`/usr/lib/postgresql/*/bin/postgres`). Shell glob syntax: `*`, `?`, `[...]`.
#[derive(Clone, Debug)]
pub struct ExeGlob {
    source: String,
    pattern: glob::Pattern,
}

impl ExeGlob {
    pub fn new(source: &str) -> Result<Self, String> {
        if source.is_empty() {
            return Err("empty executable pattern".to_owned());
        }
        let pattern =
            glob::Pattern::new(source).map_err(|e| format!("bad glob `{source}`: {}", e.msg))?;
        Ok(Self {
            source: source.to_owned(),
            pattern,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether an executable path matches. The kernel writes an executable that was unlinked
    /// while it runs as `<path> (deleted)` (`d_path()`): an nginx still running after the package
    /// upgrade that replaced its binary is still nginx, so the suffix is not part of the match.
    pub fn matches(&self, exe: &str) -> bool {
        let exe = exe.strip_suffix(" (deleted)").unwrap_or(exe);
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let subject = if self.source.contains('/') {
            exe
        } else {
            basename(exe)
        };
        self.pattern.matches_with(subject, options)
    }
}

impl PartialEq for ExeGlob {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// The last path component (`/usr/sbin/nginx` → `nginx`); the whole string when there is no `/`.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// One `unexpected_listen.allow` entry: a port or range, a bind scope, optionally an owner.
#[derive(Clone, Debug, PartialEq)]
pub struct AllowEntry {
    pub ports: PortRange,
    pub bind: BindScope,
    pub exe: Option<ExeGlob>,
}

impl AllowEntry {
    /// Whether a listener on `local_ip:port` owned by `exe` is covered by this entry.
    pub fn matches(&self, port: u16, local_ip: IpAddr, exe: Option<&str>) -> bool {
        self.ports.contains(port)
            && match self.bind {
                BindScope::Any => true,
                BindScope::Loopback => netrange::is_loopback(local_ip),
            }
            && match &self.exe {
                None => true,
                Some(glob) => exe.is_some_and(|exe| glob.matches(exe)),
            }
    }
}

/// A rule exception: every condition it names must hold. Which conditions a rule accepts:
/// `exe`, `argv_prefix`, `ancestor_exe` for all rules; `port` for `unexpected_listen` (the
/// listening port) and `webserver_egress` (the destination port); `destination` only for
/// `webserver_egress`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exception {
    /// The process's own executable.
    pub exe: Option<ExeGlob>,
    /// The process's argv starts with these arguments (exact strings).
    pub argv_prefix: Option<Vec<String>>,
    /// Some ancestor's executable.
    pub ancestor_exe: Option<ExeGlob>,
    pub destination: Option<Cidr>,
    pub port: Option<PortRange>,
}

/// What an exception is matched against.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub exe: Option<&'a str>,
    pub argv: &'a [String],
    pub ancestry: &'a [Ancestor],
    pub destination: Option<IpAddr>,
    pub port: Option<u16>,
}

impl Exception {
    pub fn matches(&self, s: &Subject<'_>) -> bool {
        let exe_ok = self
            .exe
            .as_ref()
            .is_none_or(|g| s.exe.is_some_and(|exe| g.matches(exe)));
        let argv_ok = self
            .argv_prefix
            .as_ref()
            .is_none_or(|prefix| s.argv.starts_with(prefix));
        let ancestor_ok = self.ancestor_exe.as_ref().is_none_or(|g| {
            s.ancestry
                .iter()
                .any(|a| a.exe.as_deref().is_some_and(|exe| g.matches(exe)))
        });
        let dst_ok = self.destination.is_none_or(|cidr| {
            s.destination
                .is_some_and(|ip| cidr.contains(netrange::canonical(ip)))
        });
        let port_ok = self
            .port
            .is_none_or(|range| s.port.is_some_and(|p| range.contains(p)));
        exe_ok && argv_ok && ancestor_ok && dst_ok && port_ok
    }
}

/// A policy that cannot be read or does not validate.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot read policy: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// `FILE:LINE:COLUMN: KEY: MESSAGE` (position and key left out when unknown).
    #[error("{}", display_invalid(.file, .position, .key, .message))]
    Invalid {
        file: String,
        /// 1-based line and column (in characters).
        position: Option<(usize, usize)>,
        /// Dotted key path such as `rules.unexpected_listen.allow[2].port`.
        key: Option<String>,
        message: String,
    },
}

fn display_invalid(
    file: &str,
    position: &Option<(usize, usize)>,
    key: &Option<String>,
    message: &str,
) -> String {
    let mut out = file.to_owned();
    if let Some((line, col)) = position {
        out.push_str(&format!(":{line}:{col}"));
    }
    if let Some(key) = key {
        out.push_str(&format!(": {key}"));
    }
    out.push_str(&format!(": {message}"));
    out
}

static EMBEDDED: LazyLock<Result<Policy, String>> = LazyLock::new(|| {
    parse(DEFAULT_POLICY_TOML, DEFAULT_POLICY_NAME, None).map_err(|e| e.to_string())
});

impl Policy {
    /// The policy compiled into the binary (used when `--policy` is not given).
    pub fn embedded_default() -> Self {
        match &*EMBEDDED {
            Ok(policy) => policy.clone(),
            // The embedded text is a constant checked by the unit tests; reaching this is a
            // build defect, not bad input.
            Err(e) => panic!("the embedded default policy does not validate: {e}"),
        }
    }

    /// Reads and validates a TOML policy file; errors name file, line, column and key.
    pub fn from_file(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Validates policy text; `file_name` is what error messages call it. Keys the text leaves
    /// out take the embedded default's values.
    pub fn from_toml_str(text: &str, file_name: &str) -> Result<Self, PolicyError> {
        parse(text, file_name, Some(&Self::embedded_default()))
    }

    /// The effective policy (defaults filled in) as TOML, printed by `monitor check-policy`.
    /// It parses back to an equal policy.
    pub fn to_effective_toml(&self) -> String {
        let raw = RawPolicy::from_policy(self);
        let body = match toml::to_string_pretty(&raw) {
            Ok(body) => body,
            // Only maps with non-string keys or unrepresentable values fail to serialize, and
            // RawPolicy has neither.
            Err(e) => panic!("effective policy does not serialize: {e}"),
        };
        format!("# monitor effective policy: every key, defaults filled in.\n{body}")
    }
}

// ---------------------------------------------------------------------------------------------
// Stage 1: the file's shape.

/// An `allowed_ports` / exception `port` value: `8080` or `"8000-8100"`.
#[derive(Clone, Debug)]
enum RawPort {
    Number(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl de::Visitor<'_> for PortVisitor {
            type Value = RawPort;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number or a \"low-high\" range string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPort, E> {
                Ok(RawPort::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPort, E> {
                Ok(RawPort::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPort, E> {
                Ok(RawPort::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

impl Serialize for RawPort {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Number(n) => serializer.serialize_i64(*n),
            Self::Text(t) => serializer.serialize_str(t),
        }
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    dedup_window: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    web_servers: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shells: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    rules: RawRules,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    unexpected_listen: RawListen,
    #[serde(default)]
    webserver_egress: RawEgress,
    #[serde(default)]
    webserver_shell: RawShell,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_loopback: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow: Option<Vec<Spanned<RawAllow>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exceptions: Option<Vec<Spanned<RawException>>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawEgress {
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_ports: Option<Vec<Spanned<RawPort>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    excluded_networks: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exceptions: Option<Vec<Spanned<RawException>>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawShell {
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exceptions: Option<Vec<Spanned<RawException>>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<Spanned<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ports: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bind: Option<BindScope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exe: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawException {
    #[serde(skip_serializing_if = "Option::is_none")]
    exe: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    argv_prefix: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ancestor_exe: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<Spanned<RawPort>>,
}

fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

impl RawPolicy {
    /// Every key set, from a typed policy (for `to_effective_toml`).
    fn from_policy(p: &Policy) -> Self {
        let window = jiff::SignedDuration::try_from(p.dedup_window)
            .map(|d| format!("{d:#}"))
            .unwrap_or_else(|_| format!("{}s", p.dedup_window.as_secs()));
        let globs = |list: &[ExeGlob]| {
            list.iter()
                .map(|g| unspanned(g.as_str().to_owned()))
                .collect()
        };
        Self {
            dedup_window: Some(unspanned(window)),
            web_servers: Some(globs(&p.web_servers)),
            shells: Some(globs(&p.shells)),
            rules: RawRules {
                unexpected_listen: RawListen {
                    enabled: Some(p.unexpected_listen.settings.enabled),
                    severity: Some(p.unexpected_listen.settings.severity),
                    allow_loopback: Some(p.unexpected_listen.allow_loopback),
                    allow: Some(
                        p.unexpected_listen
                            .allow
                            .iter()
                            .map(|a| {
                                let (port, ports) = if a.ports.lo == a.ports.hi {
                                    (Some(unspanned(i64::from(a.ports.lo))), None)
                                } else {
                                    (None, Some(unspanned(a.ports.to_string())))
                                };
                                unspanned(RawAllow {
                                    port,
                                    ports,
                                    bind: Some(a.bind),
                                    exe: a.exe.as_ref().map(|g| unspanned(g.as_str().to_owned())),
                                })
                            })
                            .collect(),
                    ),
                    exceptions: Some(raw_exceptions(&p.unexpected_listen.settings.exceptions)),
                },
                webserver_egress: RawEgress {
                    enabled: Some(p.webserver_egress.settings.enabled),
                    severity: Some(p.webserver_egress.settings.severity),
                    allowed_ports: Some(
                        p.webserver_egress
                            .allowed_ports
                            .iter()
                            .map(|r| unspanned(raw_port(*r)))
                            .collect(),
                    ),
                    excluded_networks: Some(
                        p.webserver_egress
                            .excluded_networks
                            .iter()
                            .map(|c| unspanned(c.to_string()))
                            .collect(),
                    ),
                    exceptions: Some(raw_exceptions(&p.webserver_egress.settings.exceptions)),
                },
                webserver_shell: RawShell {
                    enabled: Some(p.webserver_shell.settings.enabled),
                    severity: Some(p.webserver_shell.settings.severity),
                    exceptions: Some(raw_exceptions(&p.webserver_shell.settings.exceptions)),
                },
            },
        }
    }
}

fn raw_port(r: PortRange) -> RawPort {
    if r.lo == r.hi {
        RawPort::Number(i64::from(r.lo))
    } else {
        RawPort::Text(r.to_string())
    }
}

fn raw_exceptions(list: &[Exception]) -> Vec<Spanned<RawException>> {
    list.iter()
        .map(|e| {
            unspanned(RawException {
                exe: e.exe.as_ref().map(|g| unspanned(g.as_str().to_owned())),
                argv_prefix: e.argv_prefix.clone(),
                ancestor_exe: e
                    .ancestor_exe
                    .as_ref()
                    .map(|g| unspanned(g.as_str().to_owned())),
                destination: e.destination.map(|c| unspanned(c.to_string())),
                port: e.port.map(|r| unspanned(raw_port(r))),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Stage 2: validation.

/// The text being validated, for turning byte spans into positions.
struct Source<'a> {
    name: &'a str,
    text: &'a str,
}

impl Source<'_> {
    fn position(&self, span: &Range<usize>) -> Option<(usize, usize)> {
        // Spans of values we built ourselves (effective policy) are 0..0 and meaningless; a
        // parsed value always has a non-empty span.
        if span.is_empty() && span.start == 0 {
            return None;
        }
        let mut start = span.start.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = self.text[line_start..start].chars().count() + 1;
        Some((line, column))
    }

    fn error(
        &self,
        span: Option<&Range<usize>>,
        key: &str,
        message: impl Into<String>,
    ) -> PolicyError {
        PolicyError::Invalid {
            file: self.name.to_owned(),
            position: span.and_then(|s| self.position(s)),
            key: (!key.is_empty()).then(|| key.to_owned()),
            message: message.into(),
        }
    }
}

/// Deserializes and validates `text`; `base` supplies keys the text leaves out (`None` for the
/// embedded default itself, which must set every key).
fn parse(text: &str, name: &str, base: Option<&Policy>) -> Result<Policy, PolicyError> {
    let src = Source { name, text };
    let raw: RawPolicy =
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
            let key = key_path(e.path());
            let inner = e.inner();
            // One line per error: toml's messages sometimes add an "expected ..." line.
            let message = inner.message().trim_end().replace('\n', "; ");
            src.error(inner.span().as_ref(), &key, message)
        })?;
    validate(raw, base, &src)
}

/// `rules.unexpected_listen.allow[2].port`, without the private segments that
/// [`toml::Spanned`] adds.
fn key_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key.starts_with("$__serde_spanned_private") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

fn or_base<T>(
    value: Option<T>,
    base: Option<T>,
    src: &Source<'_>,
    key: &str,
) -> Result<T, PolicyError> {
    value.or(base).ok_or_else(|| {
        src.error(
            None,
            key,
            "missing (the embedded default policy must set every key)",
        )
    })
}

fn validate(
    raw: RawPolicy,
    base: Option<&Policy>,
    src: &Source<'_>,
) -> Result<Policy, PolicyError> {
    let dedup_window = match raw.dedup_window {
        Some(w) => Some(parse_window(&w, src)?),
        None => None,
    };
    let dedup_window = or_base(
        dedup_window,
        base.map(|b| b.dedup_window),
        src,
        "dedup_window",
    )?;
    let web_servers = match raw.web_servers {
        Some(list) => Some(globs(&list, "web_servers", src)?),
        None => None,
    };
    let web_servers = or_base(
        web_servers,
        base.map(|b| b.web_servers.clone()),
        src,
        "web_servers",
    )?;
    let shells = match raw.shells {
        Some(list) => Some(globs(&list, "shells", src)?),
        None => None,
    };
    let shells = or_base(shells, base.map(|b| b.shells.clone()), src, "shells")?;

    let l = raw.rules.unexpected_listen;
    let key = "rules.unexpected_listen";
    let base_l = base.map(|b| &b.unexpected_listen);
    let allow = match l.allow {
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, entry)| allow_entry(entry, &format!("{key}.allow[{i}]"), src))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let unexpected_listen = ListenRule {
        settings: settings(
            l.enabled,
            l.severity,
            l.exceptions,
            base_l.map(|b| &b.settings),
            key,
            ExceptionKinds {
                port: true,
                destination: false,
            },
            src,
        )?,
        allow_loopback: or_base(
            l.allow_loopback,
            base_l.map(|b| b.allow_loopback),
            src,
            &format!("{key}.allow_loopback"),
        )?,
        allow: or_base(
            allow,
            base_l.map(|b| b.allow.clone()),
            src,
            &format!("{key}.allow"),
        )?,
    };

    let e = raw.rules.webserver_egress;
    let key = "rules.webserver_egress";
    let base_e = base.map(|b| &b.webserver_egress);
    let allowed_ports = match e.allowed_ports {
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, p)| port_value(p, &format!("{key}.allowed_ports[{i}]"), src))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let excluded_networks = match e.excluded_networks {
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, c)| cidr(c, &format!("{key}.excluded_networks[{i}]"), src))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    let webserver_egress = EgressRule {
        settings: settings(
            e.enabled,
            e.severity,
            e.exceptions,
            base_e.map(|b| &b.settings),
            key,
            ExceptionKinds {
                port: true,
                destination: true,
            },
            src,
        )?,
        allowed_ports: or_base(
            allowed_ports,
            base_e.map(|b| b.allowed_ports.clone()),
            src,
            &format!("{key}.allowed_ports"),
        )?,
        excluded_networks: or_base(
            excluded_networks,
            base_e.map(|b| b.excluded_networks.clone()),
            src,
            &format!("{key}.excluded_networks"),
        )?,
    };

    let s = raw.rules.webserver_shell;
    let webserver_shell = ShellRule {
        settings: settings(
            s.enabled,
            s.severity,
            s.exceptions,
            base.map(|b| &b.webserver_shell.settings),
            "rules.webserver_shell",
            ExceptionKinds {
                port: false,
                destination: false,
            },
            src,
        )?,
    };

    Ok(Policy {
        dedup_window,
        web_servers,
        shells,
        unexpected_listen,
        webserver_egress,
        webserver_shell,
    })
}

/// Which exception conditions a rule accepts besides the process ones.
#[derive(Clone, Copy)]
struct ExceptionKinds {
    port: bool,
    destination: bool,
}

fn settings(
    enabled: Option<bool>,
    severity: Option<Severity>,
    exceptions: Option<Vec<Spanned<RawException>>>,
    base: Option<&RuleSettings>,
    key: &str,
    kinds: ExceptionKinds,
    src: &Source<'_>,
) -> Result<RuleSettings, PolicyError> {
    let exceptions = match exceptions {
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, e)| exception(e, &format!("{key}.exceptions[{i}]"), kinds, src))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    Ok(RuleSettings {
        enabled: or_base(
            enabled,
            base.map(|b| b.enabled),
            src,
            &format!("{key}.enabled"),
        )?,
        severity: or_base(
            severity,
            base.map(|b| b.severity),
            src,
            &format!("{key}.severity"),
        )?,
        exceptions: or_base(
            exceptions,
            base.map(|b| b.exceptions.clone()),
            src,
            &format!("{key}.exceptions"),
        )?,
    })
}

fn parse_window(w: &Spanned<String>, src: &Source<'_>) -> Result<Duration, PolicyError> {
    let bad = |msg: String| src.error(Some(&w.span()), "dedup_window", msg);
    let signed: jiff::SignedDuration = w.get_ref().parse().map_err(|_| {
        bad(format!(
            "`{}` is not a duration such as \"1h\", \"30m\" or \"90s\"",
            w.get_ref()
        ))
    })?;
    Duration::try_from(signed).map_err(|_| bad(format!("`{}` is negative", w.get_ref())))
}

fn glob(value: &Spanned<String>, key: &str, src: &Source<'_>) -> Result<ExeGlob, PolicyError> {
    ExeGlob::new(value.get_ref()).map_err(|msg| src.error(Some(&value.span()), key, msg))
}

fn globs(
    list: &[Spanned<String>],
    key: &str,
    src: &Source<'_>,
) -> Result<Vec<ExeGlob>, PolicyError> {
    list.iter()
        .enumerate()
        .map(|(i, v)| glob(v, &format!("{key}[{i}]"), src))
        .collect()
}

fn port_number(
    n: i64,
    span: &Range<usize>,
    key: &str,
    src: &Source<'_>,
) -> Result<u16, PolicyError> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| src.error(Some(span), key, format!("port {n} out of range 1-65535")))
}

/// `"8000-8100"` or `"8080"`.
fn port_range_text(
    text: &str,
    span: &Range<usize>,
    key: &str,
    src: &Source<'_>,
) -> Result<PortRange, PolicyError> {
    let number = |part: &str| -> Result<u16, PolicyError> {
        let part = part.trim();
        let n: i64 = part.parse().map_err(|_| {
            src.error(
                Some(span),
                key,
                format!("`{text}` is not a port or a \"low-high\" range"),
            )
        })?;
        port_number(n, span, key, src)
    };
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (number(lo)?, number(hi)?),
        None => {
            let p = number(text)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(src.error(
            Some(span),
            key,
            format!("range `{text}` has low {lo} above high {hi}"),
        ));
    }
    Ok(PortRange { lo, hi })
}

fn port_value(p: &Spanned<RawPort>, key: &str, src: &Source<'_>) -> Result<PortRange, PolicyError> {
    match p.get_ref() {
        RawPort::Number(n) => {
            port_number(*n, &p.span(), key, src).map(|p| PortRange { lo: p, hi: p })
        }
        RawPort::Text(t) => port_range_text(t, &p.span(), key, src),
    }
}

fn cidr(c: &Spanned<String>, key: &str, src: &Source<'_>) -> Result<Cidr, PolicyError> {
    c.get_ref().parse().map_err(|e| {
        src.error(
            Some(&c.span()),
            key,
            format!("bad CIDR `{}`: {e}", c.get_ref()),
        )
    })
}

fn allow_entry(
    entry: &Spanned<RawAllow>,
    key: &str,
    src: &Source<'_>,
) -> Result<AllowEntry, PolicyError> {
    let raw = entry.get_ref();
    let ports = match (&raw.port, &raw.ports) {
        (Some(p), None) => {
            let port = port_number(*p.get_ref(), &p.span(), &format!("{key}.port"), src)?;
            PortRange { lo: port, hi: port }
        }
        (None, Some(r)) => port_range_text(r.get_ref(), &r.span(), &format!("{key}.ports"), src)?,
        (Some(_), Some(_)) => {
            return Err(src.error(
                Some(&entry.span()),
                key,
                "give either `port` or `ports`, not both",
            ));
        }
        (None, None) => {
            return Err(src.error(
                Some(&entry.span()),
                key,
                "an allow entry needs `port` or `ports`",
            ));
        }
    };
    let exe = match &raw.exe {
        Some(e) => Some(glob(e, &format!("{key}.exe"), src)?),
        None => None,
    };
    Ok(AllowEntry {
        ports,
        bind: raw.bind.unwrap_or_default(),
        exe,
    })
}

fn exception(
    entry: &Spanned<RawException>,
    key: &str,
    kinds: ExceptionKinds,
    src: &Source<'_>,
) -> Result<Exception, PolicyError> {
    let raw = entry.get_ref();
    let exe = match &raw.exe {
        Some(e) => Some(glob(e, &format!("{key}.exe"), src)?),
        None => None,
    };
    let ancestor_exe = match &raw.ancestor_exe {
        Some(e) => Some(glob(e, &format!("{key}.ancestor_exe"), src)?),
        None => None,
    };
    let destination = match &raw.destination {
        Some(d) if !kinds.destination => {
            return Err(src.error(
                Some(&d.span()),
                &format!("{key}.destination"),
                "`destination` applies only to webserver_egress exceptions",
            ));
        }
        Some(d) => Some(cidr(d, &format!("{key}.destination"), src)?),
        None => None,
    };
    let port = match &raw.port {
        Some(p) if !kinds.port => {
            return Err(src.error(
                Some(&p.span()),
                &format!("{key}.port"),
                "`port` applies only to unexpected_listen and webserver_egress exceptions",
            ));
        }
        Some(p) => Some(port_value(p, &format!("{key}.port"), src)?),
        None => None,
    };
    if let Some(prefix) = &raw.argv_prefix
        && prefix.is_empty()
    {
        return Err(src.error(
            Some(&entry.span()),
            &format!("{key}.argv_prefix"),
            "an empty argv_prefix would match every process",
        ));
    }
    let exception = Exception {
        exe,
        argv_prefix: raw.argv_prefix.clone(),
        ancestor_exe,
        destination,
        port,
    };
    if exception == Exception::default() {
        return Err(src.error(
            Some(&entry.span()),
            key,
            "an exception needs at least one condition (exe, argv_prefix, ancestor_exe, destination, port)",
        ));
    }
    Ok(exception)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Policy, PolicyError> {
        Policy::from_toml_str(text, "policy.toml")
    }

    fn err(text: &str) -> String {
        match parse_str(text) {
            Ok(p) => panic!("expected an error for:\n{text}\ngot {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn embedded_default_validates_and_sets_every_key() {
        // base None: a key missing from the embedded file is an error, not a silent default.
        let p = parse(DEFAULT_POLICY_TOML, DEFAULT_POLICY_NAME, None)
            .expect("embedded default validates");
        assert_eq!(p, Policy::embedded_default());
        assert_eq!(p.dedup_window, Duration::from_secs(3600));
        assert_eq!(p.unexpected_listen.settings.severity, Severity::High);
        assert_eq!(p.webserver_egress.settings.severity, Severity::Medium);
        assert_eq!(p.webserver_shell.settings.severity, Severity::High);
        assert!(p.unexpected_listen.allow_loopback);
        let allowed: Vec<String> = p
            .unexpected_listen
            .allow
            .iter()
            .map(|a| a.ports.to_string())
            .collect();
        assert_eq!(allowed, ["22", "53", "80", "443"]);
        let egress: Vec<String> = p
            .webserver_egress
            .allowed_ports
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            egress,
            [
                "53", "80", "443", "8080", "8443", "3306", "5432", "6379", "11211"
            ]
        );
        let ws: Vec<&str> = p.web_servers.iter().map(ExeGlob::as_str).collect();
        assert_eq!(
            ws,
            [
                "nginx",
                "apache2",
                "httpd",
                "lighttpd",
                "caddy",
                "openresty",
                "php-fpm*",
                "php-cgi*",
                "uwsgi*",
                "gunicorn*",
                "hypercorn",
                "uvicorn",
                "puma",
                "unicorn",
                "traefik",
                "h2o",
                "varnishd"
            ]
        );
        let shells: Vec<&str> = p.shells.iter().map(ExeGlob::as_str).collect();
        assert_eq!(
            shells,
            [
                "sh", "bash", "rbash", "dash", "zsh", "ksh", "ksh93", "rksh*", "mksh*", "lksh",
                "ash", "fish", "tcsh", "csh", "bsd-csh"
            ]
        );
    }

    #[test]
    fn a_deleted_executable_still_matches_its_pattern() {
        let nginx = ExeGlob::new("nginx").unwrap();
        let postgres = ExeGlob::new("/usr/lib/postgresql/*/bin/postgres").unwrap();
        assert!(nginx.matches("/usr/sbin/nginx (deleted)"));
        assert!(postgres.matches("/usr/lib/postgresql/15/bin/postgres (deleted)"));
        assert!(!nginx.matches("/usr/sbin/nginx-debug (deleted)"));
    }

    #[test]
    fn default_shell_exceptions_allow_exactly_php_mail() {
        let p = Policy::embedded_default();
        let fpm = Ancestor {
            pid: 900,
            exe: Some("/usr/sbin/php-fpm8.2".into()),
            comm: "php-fpm8.2".into(),
            argv: vec!["php-fpm: pool www".into()],
        };
        let excepted = |argv: &[&str], ancestry: &[Ancestor]| {
            let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
            let subject = Subject {
                exe: Some("/usr/bin/dash"),
                argv: &argv,
                ancestry,
                destination: None,
                port: None,
            };
            p.webserver_shell
                .settings
                .exceptions
                .iter()
                .any(|e| e.matches(&subject))
        };
        let ours = std::slice::from_ref(&fpm);
        assert!(excepted(&["sh", "-c", "/usr/sbin/sendmail -t -i"], ours));
        assert!(excepted(
            &["sh", "-c", "--", "/usr/sbin/sendmail -t -i"],
            ours
        ));
        // Anything riding along, another command, or another parent is not mail().
        assert!(!excepted(
            &["sh", "-c", "/usr/sbin/sendmail -t -i; id"],
            ours
        ));
        assert!(!excepted(&["sh", "-c", "id"], ours));
        assert!(!excepted(&["sh", "-c", "/usr/sbin/sendmail -t -i"], &[]));
    }

    #[test]
    fn default_excluded_networks_are_the_documented_special_purpose_blocks() {
        let p = Policy::embedded_default();
        let listed: Vec<String> = p
            .webserver_egress
            .excluded_networks
            .iter()
            .map(Cidr::to_string)
            .collect();
        let documented: Vec<&str> = netrange::SPECIAL_PURPOSE.iter().map(|(b, _)| *b).collect();
        assert_eq!(listed, documented);
    }

    #[test]
    fn empty_file_is_the_embedded_default() {
        assert_eq!(
            parse_str("").expect("empty policy"),
            Policy::embedded_default()
        );
    }

    #[test]
    fn effective_toml_round_trips() {
        let default = Policy::embedded_default();
        let text = default.to_effective_toml();
        let back = parse(&text, "effective.toml", None).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, default);

        let custom = parse_str(
            r#"
dedup_window = "90s"
web_servers = ["nginx", "/opt/app/bin/*"]
[rules.unexpected_listen]
severity = "CRITICAL"
allow_loopback = false
allow = [{ ports = "8000-8100", bind = "loopback" }, { port = 5432, exe = "/usr/lib/postgresql/*/bin/postgres" }]
exceptions = [{ exe = "/usr/sbin/sshd", port = 2222 }]
[rules.webserver_egress]
enabled = false
allowed_ports = [443, "9000-9100"]
excluded_networks = ["10.0.0.0/8", "::1"]
exceptions = [{ destination = "203.0.113.0/24", port = "4000-4999", ancestor_exe = "php-fpm*" }]
[rules.webserver_shell]
exceptions = [{ argv_prefix = ["sh", "-c", "/usr/bin/convert"] }]
"#,
        )
        .expect("custom policy");
        let text = custom.to_effective_toml();
        // base None: the effective text alone must describe the whole policy.
        let back = parse(&text, "effective.toml", None).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(back, custom);
        assert_eq!(back.dedup_window, Duration::from_secs(90));
        assert!(!back.webserver_egress.settings.enabled);
    }

    #[test]
    fn dedup_window_formats() {
        for (text, secs) in [
            ("\"0s\"", 0),
            ("\"90s\"", 90),
            ("\"1h 30m\"", 5400),
            ("\"PT1H\"", 3600),
        ] {
            let p = parse_str(&format!("dedup_window = {text}\n"))
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(p.dedup_window, Duration::from_secs(secs), "{text}");
        }
        let p = parse_str("dedup_window = \"250ms\"\n").expect("milliseconds");
        assert_eq!(p.dedup_window, Duration::from_millis(250));
        let e = err("dedup_window = \"-5m\"\n");
        assert!(e.ends_with("dedup_window: `-5m` is negative"), "{e}");
    }

    #[test]
    fn keys_left_out_take_the_default() {
        let p = parse_str("[rules.webserver_egress]\nallowed_ports = [443]\n").expect("valid");
        let d = Policy::embedded_default();
        assert_eq!(
            p.webserver_egress.allowed_ports,
            [PortRange { lo: 443, hi: 443 }]
        );
        assert_eq!(
            p.webserver_egress.excluded_networks,
            d.webserver_egress.excluded_networks
        );
        assert_eq!(p.unexpected_listen, d.unexpected_listen);
    }

    #[test]
    fn error_bad_port_names_line_column_and_key() {
        let text = "\n[rules.unexpected_listen]\nallow = [\n  { port = 22 },\n  { port = 80 },\n  { port = 70000 },\n]\n";
        assert_eq!(
            err(text),
            "policy.toml:6:12: rules.unexpected_listen.allow[2].port: port 70000 out of range 1-65535"
        );
        assert_eq!(
            err("[rules.webserver_egress]\nallowed_ports = [0]\n"),
            "policy.toml:2:18: rules.webserver_egress.allowed_ports[0]: port 0 out of range 1-65535"
        );
    }

    #[test]
    fn error_unknown_key() {
        let e =
            err("dedup_window = \"1h\"\n[rules.unexpected_listen]\nenabled = true\nalow = []\n");
        assert!(
            e.starts_with("policy.toml:4:1: rules.unexpected_listen"),
            "{e}"
        );
        assert!(e.contains("unknown field `alow`"), "{e}");
        let e = err("[rules.unexpected_listen]\nallow = [{ port = 22, host = \"x\" }]\n");
        assert!(e.starts_with("policy.toml:2:"), "{e}");
        assert!(e.contains("rules.unexpected_listen.allow[0]"), "{e}");
        assert!(e.contains("unknown field `host`"), "{e}");
        let e = err("[rules.nope]\nenabled = true\n");
        assert!(e.starts_with("policy.toml:1:"), "{e}");
        assert!(e.contains("unknown field `nope`"), "{e}");
    }

    #[test]
    fn error_wrong_type() {
        let e = err("[rules.webserver_shell]\nenabled = \"yes\"\n");
        assert!(
            e.starts_with("policy.toml:2:11: rules.webserver_shell.enabled: "),
            "{e}"
        );
        assert!(e.contains("expected a boolean"), "{e}");
        let e = err("[rules.webserver_shell]\nseverity = \"high\"\n");
        assert!(
            e.starts_with("policy.toml:2:12: rules.webserver_shell.severity: "),
            "{e}"
        );
        assert!(e.contains("unknown variant `high`"), "{e}");
        let e = err("web_servers = \"nginx\"\n");
        assert!(e.starts_with("policy.toml:1:15: web_servers: "), "{e}");
        let e = err("[rules.webserver_egress]\nallowed_ports = [true]\n");
        assert!(
            e.starts_with("policy.toml:2:18: rules.webserver_egress.allowed_ports[0]: "),
            "{e}"
        );
        assert!(
            e.contains("a port number or a \"low-high\" range string"),
            "{e}"
        );
    }

    #[test]
    fn error_bad_cidr() {
        assert_eq!(
            err(
                "[rules.webserver_egress]\nexcluded_networks = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n"
            ),
            "policy.toml:2:36: rules.webserver_egress.excluded_networks[1]: bad CIDR `10.0.0.0/33`: prefix length /33 out of range 0-32 for IPv4"
        );
        let e = err("[rules.webserver_egress]\nexcluded_networks = [\"fe80::/129\"]\n");
        assert!(e.contains("out of range 0-128 for IPv6"), "{e}");
        let e = err("[rules.webserver_egress]\nexceptions = [{ destination = \"example.com\" }]\n");
        assert!(
            e.starts_with(
                "policy.toml:2:31: rules.webserver_egress.exceptions[0].destination: bad CIDR"
            ),
            "{e}"
        );
    }

    #[test]
    fn error_bad_range() {
        assert_eq!(
            err("[rules.unexpected_listen]\nallow = [{ ports = \"8100-8000\" }]\n"),
            "policy.toml:2:20: rules.unexpected_listen.allow[0].ports: range `8100-8000` has low 8100 above high 8000"
        );
        let e = err("[rules.unexpected_listen]\nallow = [{ ports = \"80-x\" }]\n");
        assert!(
            e.contains("`80-x` is not a port or a \"low-high\" range"),
            "{e}"
        );
        let e = err("[rules.webserver_egress]\nallowed_ports = [\"1-70000\"]\n");
        assert!(e.contains("port 70000 out of range 1-65535"), "{e}");
        let e = err("[rules.unexpected_listen]\nallow = [{ bind = \"any\" }]\n");
        assert!(
            e.starts_with("policy.toml:2:10: rules.unexpected_listen.allow[0]: "),
            "{e}"
        );
        assert!(e.contains("needs `port` or `ports`"), "{e}");
    }

    #[test]
    fn error_other_semantic_checks() {
        let e = err("dedup_window = \"soon\"\n");
        assert!(
            e.starts_with("policy.toml:1:16: dedup_window: `soon` is not a duration"),
            "{e}"
        );
        let e = err("[rules.webserver_shell]\nexceptions = [{ port = 80 }]\n");
        assert!(
            e.contains("rules.webserver_shell.exceptions[0].port: `port` applies only"),
            "{e}"
        );
        let e = err("[rules.webserver_shell]\nexceptions = [{}]\n");
        assert!(e.contains("needs at least one condition"), "{e}");
        let e = err("shells = [\"sh\", \"[ba\"]\n");
        assert!(
            e.starts_with("policy.toml:1:17: shells[1]: bad glob"),
            "{e}"
        );
        let e = err("[rules\n");
        assert!(e.starts_with("policy.toml:1:"), "{e}");
    }

    #[test]
    fn from_file_names_the_file() {
        let dir = std::env::temp_dir().join(format!("monitor-policy-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("bad.toml");
        std::fs::write(&path, "dedup_window = 5\n").expect("write");
        let e = Policy::from_file(&path)
            .expect_err("wrong type")
            .to_string();
        assert!(
            e.starts_with(&format!("{}:1:16: dedup_window: ", path.display())),
            "{e}"
        );
        let missing = Policy::from_file(&dir.join("missing.toml")).expect_err("missing");
        assert!(matches!(missing, PolicyError::Read { .. }));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    fn entry(text: &str) -> AllowEntry {
        let p = parse_str(&format!("[rules.unexpected_listen]\nallow = [{text}]\n"))
            .expect("valid entry");
        p.unexpected_listen
            .allow
            .into_iter()
            .next()
            .expect("one entry")
    }

    #[test]
    fn allow_entry_port_and_range() {
        let single = entry("{ port = 5432 }");
        assert!(single.matches(5432, ip("0.0.0.0"), Some("/usr/bin/x")));
        assert!(!single.matches(5433, ip("0.0.0.0"), Some("/usr/bin/x")));
        let range = entry("{ ports = \"8000-8100\" }");
        for (port, expect) in [
            (7999, false),
            (8000, true),
            (8050, true),
            (8100, true),
            (8101, false),
        ] {
            assert_eq!(range.matches(port, ip("::"), None), expect, "port {port}");
        }
    }

    #[test]
    fn allow_entry_bind_scope() {
        let any = entry("{ port = 9000, bind = \"any\" }");
        let lo = entry("{ port = 9000, bind = \"loopback\" }");
        for addr in ["0.0.0.0", "::", "10.1.2.3", "127.0.0.1", "::1"] {
            assert!(any.matches(9000, ip(addr), None), "any covers {addr}");
        }
        for (addr, expect) in [
            ("127.0.0.1", true),
            ("127.3.4.5", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("0.0.0.0", false),
            ("::", false),
            ("192.168.1.10", false),
        ] {
            assert_eq!(
                lo.matches(9000, ip(addr), None),
                expect,
                "loopback scope and {addr}"
            );
        }
        assert_eq!(
            entry("{ port = 9000 }").bind,
            BindScope::Any,
            "bind defaults to any"
        );
    }

    #[test]
    fn allow_entry_exe_glob() {
        let pg = entry("{ port = 5432, exe = \"/usr/lib/postgresql/*/bin/postgres\" }");
        assert!(pg.matches(
            5432,
            ip("0.0.0.0"),
            Some("/usr/lib/postgresql/16/bin/postgres")
        ));
        assert!(
            !pg.matches(
                5432,
                ip("0.0.0.0"),
                Some("/usr/lib/postgresql/16/extra/bin/postgres")
            ),
            "* stays in one component"
        );
        assert!(!pg.matches(5432, ip("0.0.0.0"), Some("/tmp/postgres")));
        assert!(
            !pg.matches(5432, ip("0.0.0.0"), None),
            "an unknown exe matches no owner"
        );
        let base = entry("{ port = 6379, exe = \"redis-server\" }");
        assert!(base.matches(6379, ip("0.0.0.0"), Some("/usr/bin/redis-server")));
        assert!(!base.matches(6379, ip("0.0.0.0"), Some("/usr/bin/redis-server-evil")));
    }

    #[test]
    fn exe_glob_basename_and_path() {
        let fpm = ExeGlob::new("php-fpm*").expect("valid");
        assert!(fpm.matches("/usr/sbin/php-fpm8.2"));
        assert!(fpm.matches("php-fpm"));
        assert!(!fpm.matches("/usr/bin/php"));
        assert!(!fpm.matches("/opt/php-fpm8.2/bin/evil"), "basename only");
        let path = ExeGlob::new("/opt/*/bin/app").expect("valid");
        assert!(path.matches("/opt/x/bin/app"));
        assert!(!path.matches("/srv/opt/x/bin/app"));
        assert!(ExeGlob::new("").is_err());
    }

    #[test]
    fn exception_conditions_all_must_hold() {
        let p = parse_str(
            "[rules.webserver_egress]\nexceptions = [{ exe = \"curl\", destination = \"93.184.216.0/24\", port = 8000 }]\n",
        )
        .expect("valid");
        let ex = &p.webserver_egress.settings.exceptions[0];
        let argv = vec!["curl".to_owned()];
        let subject = |exe: &'static str, dst: &str, port: u16| Subject {
            exe: Some(exe),
            argv: &argv,
            ancestry: &[],
            destination: Some(ip(dst)),
            port: Some(port),
        };
        assert!(ex.matches(&subject("/usr/bin/curl", "93.184.216.34", 8000)));
        assert!(
            ex.matches(&subject("/usr/bin/curl", "::ffff:93.184.216.34", 8000)),
            "mapped judged as IPv4"
        );
        assert!(!ex.matches(&subject("/usr/bin/wget", "93.184.216.34", 8000)));
        assert!(!ex.matches(&subject("/usr/bin/curl", "93.184.217.34", 8000)));
        assert!(!ex.matches(&subject("/usr/bin/curl", "93.184.216.34", 8001)));

        let p = parse_str("[rules.webserver_shell]\nexceptions = [{ argv_prefix = [\"sh\", \"-c\", \"convert\"], ancestor_exe = \"php-fpm*\" }]\n")
            .expect("valid");
        let ex = &p.webserver_shell.settings.exceptions[0];
        let ancestry = vec![Ancestor {
            pid: 10,
            exe: Some("/usr/sbin/php-fpm8.2".to_owned()),
            comm: "php-fpm8.2".to_owned(),
            argv: vec![],
        }];
        let convert: Vec<String> = ["sh", "-c", "convert", "a.png"].map(String::from).to_vec();
        let id: Vec<String> = ["sh", "-c", "id"].map(String::from).to_vec();
        for (argv, ancestry, expect) in [
            (&convert, ancestry.as_slice(), true),
            (&id, ancestry.as_slice(), false),
            (&convert, &[][..], false),
        ] {
            let subject = Subject {
                exe: Some("/usr/bin/dash"),
                argv,
                ancestry,
                destination: None,
                port: None,
            };
            assert_eq!(
                ex.matches(&subject),
                expect,
                "{argv:?} with {} ancestors",
                ancestry.len()
            );
        }
    }
}
