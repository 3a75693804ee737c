//! The typed building blocks of a policy: executable patterns, port ranges, bind scopes, rule
//! exceptions and the settings every rule has. Rules, the process table and the enrich stage
//! match with these; [`crate::validate`] builds them from the policy file.

use std::{fmt, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::{
    netrange::{self, Cidr},
    record::{Ancestor, Protocol, Severity},
};

/// What every rule has.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSettings {
    pub enabled: bool,
    pub severity: Severity,
    /// An event matching any exception raises no alert for this rule.
    pub exceptions: Vec<Exception>,
}

/// Where a listener must be bound for an allow entry to cover it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindScope {
    /// Any local address (wildcard, a public address, or loopback).
    #[default]
    Any,
    /// Only 127.0.0.0/8 or `::1` (IPv4-mapped loopback included).
    Loopback,
    /// Only a multicast group's address (224.0.0.0/4, `ff00::/8`): a UDP socket bound there
    /// receives that group's datagrams and nothing sent to the host's own addresses.
    Multicast,
}

impl BindScope {
    /// Whether a listener bound to `ip` is in this scope.
    pub fn covers(self, ip: IpAddr) -> bool {
        match self {
            Self::Any => true,
            Self::Loopback => netrange::is_loopback(ip),
            Self::Multicast => netrange::is_multicast(ip),
        }
    }
}

/// Which protocol's listeners an allow entry covers: TCP listening sockets, open UDP ports, or
/// both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolScope {
    #[default]
    Tcp,
    Udp,
    Any,
}

impl ProtocolScope {
    pub fn covers(self, protocol: Protocol) -> bool {
        matches!(
            (self, protocol),
            (Self::Any, _) | (Self::Tcp, Protocol::Tcp) | (Self::Udp, Protocol::Udp)
        )
    }
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

/// The path by which a program is one of `list` (web servers, shells): its executable, else the
/// path the kernel executed, which a script server cannot change later, unlike comm or argv
/// (`/usr/bin/gunicorn` runs as `/usr/bin/python3.11`). The one place that decides it, for the
/// process table's lineage tracking and for the rules' reading of a record alike.
pub fn program_path<'a>(
    list: &[ExeGlob],
    exe: Option<&'a str>,
    filename: Option<&'a str>,
) -> Option<&'a str> {
    exe.into_iter()
        .chain(filename)
        .find(|path| matches_any(list, path))
}

/// Whether any pattern of `list` matches `exe`.
pub fn matches_any(list: &[ExeGlob], exe: &str) -> bool {
    list.iter().any(|g| g.matches(exe))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_executable_still_matches_its_pattern() {
        let nginx = ExeGlob::new("nginx").unwrap();
        let postgres = ExeGlob::new("/usr/lib/postgresql/*/bin/postgres").unwrap();
        assert!(nginx.matches("/usr/sbin/nginx (deleted)"));
        assert!(postgres.matches("/usr/lib/postgresql/15/bin/postgres (deleted)"));
        assert!(!nginx.matches("/usr/sbin/nginx-debug (deleted)"));
    }

    #[test]
    fn bind_and_protocol_scopes() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for (addr, loopback, multicast) in [
            ("0.0.0.0", false, false),
            ("::", false, false),
            ("127.0.0.1", true, false),
            ("::1", true, false),
            ("224.0.0.251", false, true),
            ("239.255.255.250", false, true),
            ("::ffff:224.0.0.251", false, true),
            ("ff02::fb", false, true),
            ("10.0.0.1", false, false),
            ("fe80::1", false, false),
        ] {
            assert!(BindScope::Any.covers(ip(addr)), "{addr}");
            assert_eq!(BindScope::Loopback.covers(ip(addr)), loopback, "{addr}");
            assert_eq!(BindScope::Multicast.covers(ip(addr)), multicast, "{addr}");
        }
        for (scope, tcp, udp) in [
            (ProtocolScope::Tcp, true, false),
            (ProtocolScope::Udp, false, true),
            (ProtocolScope::Any, true, true),
        ] {
            assert_eq!(scope.covers(Protocol::Tcp), tcp, "{scope:?}");
            assert_eq!(scope.covers(Protocol::Udp), udp, "{scope:?}");
        }
        assert_eq!(ProtocolScope::default(), ProtocolScope::Tcp);
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
    fn program_path_prefers_the_executable_then_the_filename() {
        let list = [
            ExeGlob::new("gunicorn*").unwrap(),
            ExeGlob::new("nginx").unwrap(),
        ];
        assert_eq!(
            program_path(&list, Some("/usr/sbin/nginx"), None),
            Some("/usr/sbin/nginx")
        );
        assert_eq!(
            program_path(
                &list,
                Some("/usr/bin/python3.11"),
                Some("/usr/bin/gunicorn")
            ),
            Some("/usr/bin/gunicorn")
        );
        assert_eq!(program_path(&list, Some("/usr/bin/python3.11"), None), None);
        assert_eq!(program_path(&list, None, None), None);
    }
}
