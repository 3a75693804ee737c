//! The detection policy: a TOML file (`--policy FILE`) or the default compiled into the binary
//! (`default_policy.toml`, parsed through the very same code).
//!
//! Two stages, so that every mistake is reported once and the detections never re-check input:
//! 1. serde deserializes the text into the file's shape ([`input::PolicyInput`]:
//!    `deny_unknown_fields`, every key optional, spans kept on whatever is validated later);
//! 2. validation turns it into the typed [`Policy`]: the shared keys here, each rule's section by
//!    the rule's own file ([`crate::rules`]), with the helpers of [`crate::validate`]. A key the
//!    file leaves out takes its value from the embedded default policy.
//!
//! Errors read `FILE:LINE:COLUMN: KEY: MESSAGE`, for example
//! `policy.toml:12:9: rules.unexpected_listen.allow[2].port: port 70000 out of range 1-65535`.
//! docs/policy.md documents every key.

mod input;

use std::{path::Path, sync::LazyLock, time::Duration};

use toml::Spanned;

pub use crate::validate::PolicyError;
use crate::{
    enrich::{self, lists},
    identity, login,
    matcher::ExeGlob,
    rules::Rules,
    trust::Trust,
    validate::{self, Source, or_base, unspanned},
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
    /// Shells, matched on executable paths (busybox applets: see `enrich::lineage`), and by
    /// file and content ([`crate::identity`]).
    pub shells: Vec<ExeGlob>,
    /// Files listing the host's shells, one absolute path a line (`/etc/shells`): each is a
    /// shell by file and content too.
    pub shell_lists: Vec<String>,
    /// Interpreters and network tools (python, perl, nc …): under a web server, they and their
    /// descendants get no allowed egress ports. Matched like shells.
    pub egress_tools: Vec<ExeGlob>,
    /// The dynamic loader (`ld-linux-x86-64.so.2`): an exec of it is judged by the program it
    /// runs.
    pub loaders: Vec<ExeGlob>,
    /// Web servers' service users: a process running as one counts as under a web server even
    /// when its lineage is gone.
    pub web_server_users: Vec<String>,
    /// How SSH logins are recognised (`[logins]`).
    pub logins: login::Config,
    /// The offline lists describing remote addresses (`[enrichment]`).
    pub enrichment: lists::Config,
    /// Every rule's section.
    pub rules: Rules,
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
        Self::from_trusted_file(path, Trust::Any)
    }

    /// [`Policy::from_file`], refusing a file that `trust` does not accept (judged on the opened
    /// file, so the file judged is the file read).
    pub fn from_trusted_file(path: &Path, trust: Trust) -> Result<Self, PolicyError> {
        use std::io::Read as _;
        let read = |source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(read)?;
        let meta = file.metadata().map_err(read)?;
        trust
            .check(&meta)
            .map_err(|reason| PolicyError::Untrusted {
                path: path.display().to_string(),
                reason,
            })?;
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(read)?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Validates policy text; `file_name` is what error messages call it. Keys the text leaves
    /// out take the embedded default's values.
    pub fn from_toml_str(text: &str, file_name: &str) -> Result<Self, PolicyError> {
        parse(text, file_name, Some(&Self::embedded_default()))
    }

    /// The program lists the process table and the identity catalog judge programs by.
    pub fn programs(&self) -> identity::Programs {
        identity::Programs {
            web_servers: self.web_servers.clone(),
            shells: self.shells.clone(),
            egress_tools: self.egress_tools.clone(),
            loaders: self.loaders.clone(),
            shell_lists: self.shell_lists.clone(),
        }
    }

    /// The program lists the rules' context judges records by.
    pub fn context_programs(&self) -> enrich::Programs<'_> {
        enrich::Programs {
            web_servers: &self.web_servers,
            shells: &self.shells,
            egress_tools: &self.egress_tools,
            loaders: &self.loaders,
            web_server_users: &self.web_server_users,
        }
    }

    /// The effective policy (defaults filled in) as TOML, printed by `monitor check-policy`.
    /// It parses back to an equal policy.
    pub fn to_effective_toml(&self) -> String {
        let input = input::PolicyInput {
            dedup_window: Some(unspanned(window_text(self.dedup_window))),
            web_servers: Some(glob_inputs(&self.web_servers)),
            shells: Some(glob_inputs(&self.shells)),
            shell_lists: Some(self.shell_lists.iter().cloned().map(unspanned).collect()),
            egress_tools: Some(glob_inputs(&self.egress_tools)),
            loaders: Some(glob_inputs(&self.loaders)),
            web_server_users: Some(
                self.web_server_users
                    .iter()
                    .cloned()
                    .map(unspanned)
                    .collect(),
            ),
            logins: self.logins.to_input(),
            enrichment: self.enrichment.to_input(),
            rules: self.rules.to_input(),
        };
        let body = match toml::to_string_pretty(&input) {
            Ok(body) => body,
            // Only maps with non-string keys or unrepresentable values fail to serialize, and
            // the input types have neither.
            Err(e) => panic!("effective policy does not serialize: {e}"),
        };
        format!("# monitor effective policy: every key, defaults filled in.\n{body}")
    }
}

fn window_text(window: Duration) -> String {
    jiff::SignedDuration::try_from(window)
        .map_or_else(|_| format!("{}s", window.as_secs()), |d| format!("{d:#}"))
}

fn glob_inputs(list: &[ExeGlob]) -> Vec<Spanned<String>> {
    list.iter()
        .map(|g| unspanned(g.as_str().to_owned()))
        .collect()
}

/// Deserializes and validates `text`; `base` supplies keys the text leaves out (`None` for the
/// embedded default itself, which must set every key).
fn parse(text: &str, name: &str, base: Option<&Policy>) -> Result<Policy, PolicyError> {
    let src = Source { name, text };
    let input: input::PolicyInput = src.deserialize()?;
    let dedup_window = match input.dedup_window {
        Some(w) => Some(parse_window(&w, &src)?),
        None => None,
    };
    let web_servers = match input.web_servers {
        Some(list) => Some(validate::globs(&list, "web_servers", &src)?),
        None => None,
    };
    let shells = match input.shells {
        Some(list) => Some(validate::globs(&list, "shells", &src)?),
        None => None,
    };
    let egress_tools = match input.egress_tools {
        Some(list) => Some(validate::globs(&list, "egress_tools", &src)?),
        None => None,
    };
    let loaders = match input.loaders {
        Some(list) => Some(validate::globs(&list, "loaders", &src)?),
        None => None,
    };
    let shell_lists = match input.shell_lists {
        Some(list) => Some(absolute_paths(&list, "shell_lists", &src)?),
        None => None,
    };
    let web_server_users = match input.web_server_users {
        Some(list) => Some(user_names(&list, "web_server_users", &src)?),
        None => None,
    };
    Ok(Policy {
        dedup_window: or_base(
            dedup_window,
            base.map(|b| b.dedup_window),
            &src,
            "dedup_window",
        )?,
        web_servers: or_base(
            web_servers,
            base.map(|b| b.web_servers.clone()),
            &src,
            "web_servers",
        )?,
        shells: or_base(shells, base.map(|b| b.shells.clone()), &src, "shells")?,
        shell_lists: or_base(
            shell_lists,
            base.map(|b| b.shell_lists.clone()),
            &src,
            "shell_lists",
        )?,
        egress_tools: or_base(
            egress_tools,
            base.map(|b| b.egress_tools.clone()),
            &src,
            "egress_tools",
        )?,
        loaders: or_base(loaders, base.map(|b| b.loaders.clone()), &src, "loaders")?,
        web_server_users: or_base(
            web_server_users,
            base.map(|b| b.web_server_users.clone()),
            &src,
            "web_server_users",
        )?,
        logins: login::Config::validate(input.logins, base.map(|b| &b.logins), &src)?,
        enrichment: lists::Config::validate(input.enrichment, base.map(|b| &b.enrichment), &src)?,
        rules: Rules::validate(input.rules, base.map(|b| &b.rules), &src)?,
    })
}

/// A list of absolute paths.
fn absolute_paths(
    list: &[Spanned<String>],
    key: &str,
    src: &Source<'_>,
) -> Result<Vec<String>, PolicyError> {
    checked_strings(list, key, src, |p| {
        (!p.starts_with('/')).then(|| format!("`{p}` is not an absolute path"))
    })
}

/// A list of user names as the passwd database spells them (no `:`, no whitespace).
fn user_names(
    list: &[Spanned<String>],
    key: &str,
    src: &Source<'_>,
) -> Result<Vec<String>, PolicyError> {
    checked_strings(list, key, src, |u| {
        (u.is_empty() || u.contains(':') || u.chars().any(char::is_whitespace))
            .then(|| format!("`{u}` is not a user name"))
    })
}

/// The strings of `list`, or the first one `bad` has a complaint about, as `key[i]`'s error.
fn checked_strings(
    list: &[Spanned<String>],
    key: &str,
    src: &Source<'_>,
    bad: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>, PolicyError> {
    list.iter()
        .enumerate()
        .map(|(i, v)| match bad(v.get_ref()) {
            Some(msg) => Err(src.error(Some(&v.span()), &format!("{key}[{i}]"), msg)),
            None => Ok(v.get_ref().clone()),
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::{
        matcher::{ExeGlob, PortRange, Subject},
        netrange::{self, Cidr},
        record::{Ancestor, Severity},
    };

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
        assert_eq!(p.dedup_window, Duration::from_hours(1));
        assert_eq!(p.rules.unexpected_listen.settings.severity, Severity::High);
        assert_eq!(p.rules.webserver_egress.settings.severity, Severity::Medium);
        assert_eq!(p.rules.webserver_shell.settings.severity, Severity::High);
        assert!(p.rules.unexpected_listen.allow_loopback);
        let allowed: Vec<String> = p
            .rules
            .unexpected_listen
            .allow
            .iter()
            .map(|a| {
                let mut entry = format!("{}/{:?}/{:?}", a.ports, a.protocol, a.bind);
                if let Some(exe) = &a.exe {
                    entry = format!("{entry}/{}", exe.as_str());
                }
                entry
            })
            .collect();
        assert_eq!(
            allowed,
            [
                "22/Tcp/Any",
                "53/Any/Any",
                "80/Tcp/Any",
                "443/Tcp/Any",
                "68/Udp/Any",
                "123/Udp/Any",
                "5353/Udp/Multicast",
                "5353/Udp/Any/avahi-daemon",
                "5353/Udp/Any/systemd-resolved",
            ]
        );
        let egress: Vec<String> = p
            .rules
            .webserver_egress
            .allowed_ports
            .iter()
            .map(std::string::ToString::to_string)
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
    fn default_shell_exceptions_allow_exactly_php_mail() {
        let p = Policy::embedded_default();
        let fpm = Ancestor {
            pid: 900,
            exe: Some("/usr/sbin/php-fpm8.2".into()),
            comm: "php-fpm8.2".into(),
            argv: vec!["php-fpm: pool www".into()],
        };
        let excepted = |argv: &[&str], ancestry: &[Ancestor]| {
            let argv: Vec<String> = argv.iter().map(std::string::ToString::to_string).collect();
            let subject = Subject {
                exe: Some("/usr/bin/dash"),
                argv: &argv,
                ancestry,
                destination: None,
                port: None,
            };
            p.rules
                .webserver_shell
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
            .rules
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
        assert!(!back.rules.webserver_egress.settings.enabled);
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
            p.rules.webserver_egress.allowed_ports,
            [PortRange { lo: 443, hi: 443 }]
        );
        assert_eq!(
            p.rules.webserver_egress.excluded_networks,
            d.rules.webserver_egress.excluded_networks
        );
        assert_eq!(p.rules.unexpected_listen, d.rules.unexpected_listen);
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
        let e = err("egress_tools = [\"nc\", \"[py\"]\n");
        assert!(
            e.starts_with("policy.toml:1:23: egress_tools[1]: bad glob"),
            "{e}"
        );
        let e = err("shell_lists = [\"/etc/shells\", \"shells\"]\n");
        assert!(
            e.starts_with("policy.toml:1:31: shell_lists[1]: `shells` is not an absolute path"),
            "{e}"
        );
        let e = err("\nweb_server_users = [\"www:data\"]\n");
        assert!(
            e.starts_with("policy.toml:2:21: web_server_users[0]: `www:data` is not a user name"),
            "{e}"
        );
        let e = err("loaders = [\"\"]\n");
        assert!(e.contains("loaders[0]"), "{e}");
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

    #[test]
    fn exception_conditions_all_must_hold() {
        let p = parse_str(
            "[rules.webserver_egress]\nexceptions = [{ exe = \"curl\", destination = \"93.184.216.0/24\", port = 8000 }]\n",
        )
        .expect("valid");
        let ex = &p.rules.webserver_egress.settings.exceptions[0];
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
        let ex = &p.rules.webserver_shell.settings.exceptions[0];
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
