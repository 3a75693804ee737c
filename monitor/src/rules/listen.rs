//! `unexpected_listen`: a TCP socket starts listening on a port the policy does not allow. The
//! start-up baseline feeds sockets that were already listening through here too
//! (`pre_existing: true`), so they are judged by the same allow list.
//!
//! Section `[rules.unexpected_listen]`: `allow_loopback`, `allow` (ports or ranges, a bind scope,
//! optionally the owner's executable), besides `enabled`, `severity` and `exceptions`
//! (`exe`, `argv_prefix`, `ancestor_exe`, `port`: the listening port).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Finding, Rule, Section, exe_key};
use crate::{
    enrich::Context,
    matcher::{BindScope, ExeGlob, PortRange, RuleSettings, Subject},
    netrange,
    record::{EventType, RuleId},
    validate::{
        self, ExceptionInput, ExceptionKinds, PolicyError, Source, or_base, settings_input,
        unspanned,
    },
};

#[derive(Clone, Debug, PartialEq)]
pub struct UnexpectedListen {
    pub settings: RuleSettings,
    /// Listeners bound only to 127.0.0.0/8 or `::1` are allowed.
    pub allow_loopback: bool,
    pub allow: Vec<AllowEntry>,
}

/// One `allow` entry: a port or range, a bind scope, optionally an owner.
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

impl Rule for UnexpectedListen {
    fn id(&self) -> RuleId {
        RuleId::UnexpectedListen
    }

    fn judges(&self) -> &'static [EventType] {
        &[EventType::Listen]
    }

    fn settings(&self) -> &RuleSettings {
        &self.settings
    }

    fn judge<'e>(&self, ctx: &Context<'e>) -> Option<Finding<'e>> {
        let event = ctx.event;
        let socket = event.socket.as_ref()?;
        let (ip, port) = (socket.local.ip, socket.local.port);
        if self.allow_loopback && netrange::is_loopback(ip) {
            return None;
        }
        let exe = event.process.exe.as_deref();
        if self.allow.iter().any(|entry| entry.matches(port, ip, exe)) {
            return None;
        }
        Some(Finding {
            shell_match: None,
            web_server_via: None,
            title: format!("Unexpected Port Opened: {port}"),
            dedup: format!("unexpected_listen:{}:{port}", exe_key(exe)),
            subject: Subject {
                exe,
                argv: &event.process.argv,
                ancestry: &event.ancestry,
                destination: None,
                port: Some(port),
            },
        })
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<crate::record::Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_loopback: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow: Option<Vec<Spanned<AllowInput>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exceptions: Option<Vec<Spanned<ExceptionInput>>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AllowInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<Spanned<i64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ports: Option<Spanned<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bind: Option<BindScope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exe: Option<Spanned<String>>,
}

impl Section for UnexpectedListen {
    type Input = ListenInput;

    fn validate(
        input: ListenInput,
        base: Option<&Self>,
        key: &str,
        src: &Source<'_>,
    ) -> Result<Self, PolicyError> {
        let allow = match input.allow {
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, entry)| allow_entry(entry, &format!("{key}.allow[{i}]"), src))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        Ok(Self {
            settings: validate::settings(
                input.enabled,
                input.severity,
                input.exceptions,
                base.map(|b| &b.settings),
                key,
                ExceptionKinds {
                    port: true,
                    destination: false,
                },
                src,
            )?,
            allow_loopback: or_base(
                input.allow_loopback,
                base.map(|b| b.allow_loopback),
                src,
                &format!("{key}.allow_loopback"),
            )?,
            allow: or_base(
                allow,
                base.map(|b| b.allow.clone()),
                src,
                &format!("{key}.allow"),
            )?,
        })
    }

    fn to_input(&self) -> ListenInput {
        let (enabled, severity, exceptions) = settings_input(&self.settings);
        ListenInput {
            enabled,
            severity,
            allow_loopback: Some(self.allow_loopback),
            allow: Some(
                self.allow
                    .iter()
                    .map(|a| {
                        let (port, ports) = if a.ports.lo == a.ports.hi {
                            (Some(unspanned(i64::from(a.ports.lo))), None)
                        } else {
                            (None, Some(unspanned(a.ports.to_string())))
                        };
                        unspanned(AllowInput {
                            port,
                            ports,
                            bind: Some(a.bind),
                            exe: a.exe.as_ref().map(|g| unspanned(g.as_str().to_owned())),
                        })
                    })
                    .collect(),
            ),
            exceptions,
        }
    }
}

fn allow_entry(
    entry: &Spanned<AllowInput>,
    key: &str,
    src: &Source<'_>,
) -> Result<AllowEntry, PolicyError> {
    let raw = entry.get_ref();
    let ports = match (&raw.port, &raw.ports) {
        (Some(p), None) => {
            let port = validate::port_number(*p.get_ref(), &p.span(), &format!("{key}.port"), src)?;
            PortRange { lo: port, hi: port }
        }
        (None, Some(r)) => {
            validate::port_range_text(r.get_ref(), &r.span(), &format!("{key}.ports"), src)?
        }
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
        Some(e) => Some(validate::glob(e, &format!("{key}.exe"), src)?),
        None => None,
    };
    Ok(AllowEntry {
        ports,
        bind: raw.bind.unwrap_or_default(),
        exe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        policy::Policy,
        record::Severity,
        testing::{T0, detector, detector_with, ip, listen, process, python},
    };

    #[test]
    fn odd_port_listener_alerts_allowed_and_loopback_do_not() {
        let mut d = detector();
        let alerts = d.on_event(&listen(T0, python(), "0.0.0.0", 4444), 0);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(
            (a.rule, a.severity),
            (RuleId::UnexpectedListen, Severity::High)
        );
        assert_eq!(a.title, "Unexpected Port Opened: 4444");
        assert_eq!(a.dedup, "unexpected_listen:/usr/bin/python3.11:4444");
        assert_eq!(a.time, T0);
        assert!(!a.pre_existing);
        let nginx = process(
            800,
            "/usr/sbin/nginx",
            "nginx",
            &["nginx: master process /usr/sbin/nginx"],
        );
        for (proc_, addr, port) in [
            (nginx.clone(), "0.0.0.0", 80),
            (nginx.clone(), "::", 443),
            (python(), "127.0.0.1", 5555),
            (python(), "::1", 5555),
            (python(), "::ffff:127.0.0.1", 5556),
        ] {
            assert!(
                d.on_event(&listen(T0, proc_, addr, port), 0).is_empty(),
                "{addr}:{port}"
            );
        }
        let alerts = d.on_event(&listen(T0, python(), "::", 8081), 0);
        assert_eq!(alerts.len(), 1, "IPv6 wildcard on an odd port");
    }

    #[test]
    fn pre_existing_listener_is_judged_and_marked() {
        let mut d = detector();
        let mut ev = listen(T0, python(), "0.0.0.0", 9999);
        ev.pre_existing = true;
        let alerts = d.on_event(&ev, 0);
        assert_eq!(alerts.len(), 1);
        assert!(alerts[0].pre_existing);
    }

    #[test]
    fn loopback_knob_off_and_exe_bound_allow_entry() {
        let mut d = detector_with(
            "[rules.unexpected_listen]\nallow_loopback = false\nallow = [{ port = 5432, exe = \"/usr/lib/postgresql/*/bin/postgres\" }]\n",
        );
        assert_eq!(
            d.on_event(&listen(T0, python(), "127.0.0.1", 5555), 0)
                .len(),
            1
        );
        let pg = process(
            700,
            "/usr/lib/postgresql/16/bin/postgres",
            "postgres",
            &["postgres"],
        );
        assert!(d.on_event(&listen(T0, pg, "0.0.0.0", 5432), 0).is_empty());
        assert_eq!(
            d.on_event(&listen(T0, python(), "0.0.0.0", 5432), 0).len(),
            1,
            "5432 only for postgres"
        );
    }

    fn entry(text: &str) -> AllowEntry {
        let p = Policy::from_toml_str(
            &format!("[rules.unexpected_listen]\nallow = [{text}]\n"),
            "policy.toml",
        )
        .expect("valid entry");
        p.rules
            .unexpected_listen
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
}
