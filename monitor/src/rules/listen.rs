//! `unexpected_listen`: a TCP socket starts listening, or a UDP socket is bound (an open UDP
//! port), on a port the policy does not allow. The start-up baseline feeds sockets that were
//! already listening or open through here too (`pre_existing: true`), so they are judged by the
//! same allow list.
//!
//! Section `[rules.unexpected_listen]`: `allow_loopback`, `allow` (ports or ranges, a protocol, a
//! bind scope, optionally the owner's executable), besides `enabled`, `severity` and `exceptions`
//! (`exe`, `argv_prefix`, `ancestor_exe`, `port`: the listening port, of either protocol).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Finding, Rule, Section, exe_key};
use crate::{
    enrich::Context,
    matcher::{BindScope, ExeGlob, PortRange, ProtocolScope, RuleSettings, Subject},
    netrange,
    record::{EventType, Protocol, RuleId},
    validate::{
        self, ExceptionInput, ExceptionKinds, PolicyError, Source, or_base, settings_input,
        unspanned,
    },
};

#[derive(Clone, Debug, PartialEq)]
pub struct UnexpectedListen {
    pub settings: RuleSettings,
    /// Listeners (TCP or UDP) bound only to 127.0.0.0/8 or `::1` are allowed.
    pub allow_loopback: bool,
    pub allow: Vec<AllowEntry>,
}

/// One `allow` entry: a port or range, a protocol, a bind scope, optionally an owner.
#[derive(Clone, Debug, PartialEq)]
pub struct AllowEntry {
    pub ports: PortRange,
    pub protocol: ProtocolScope,
    pub bind: BindScope,
    pub exe: Option<ExeGlob>,
}

impl AllowEntry {
    /// Whether a `protocol` listener on `local_ip:port` owned by `exe` is covered by this entry.
    pub fn matches(
        &self,
        protocol: Protocol,
        port: u16,
        local_ip: IpAddr,
        exe: Option<&str>,
    ) -> bool {
        self.ports.contains(port)
            && self.protocol.covers(protocol)
            && self.bind.covers(local_ip)
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
        let (ip, port, protocol) = (socket.local.ip, socket.local.port, socket.protocol);
        if self.allow_loopback && netrange::is_loopback(ip) {
            return None;
        }
        let exe = event.process.exe.as_deref();
        if self
            .allow
            .iter()
            .any(|entry| entry.matches(protocol, port, ip, exe))
        {
            return None;
        }
        // TCP keeps the titles and keys it always had; a UDP port says so.
        let suffix = match protocol {
            Protocol::Tcp => "",
            Protocol::Udp => "/udp",
        };
        Some(Finding {
            shell_match: None,
            web_server_via: None,
            title: format!("Unexpected Port Opened: {port}{suffix}"),
            dedup: format!("unexpected_listen:{}:{port}{suffix}", exe_key(exe)),
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
    protocol: Option<ProtocolScope>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bind: Option<Spanned<BindScope>>,
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
                            protocol: Some(a.protocol),
                            bind: Some(unspanned(a.bind)),
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
    let protocol = raw.protocol.unwrap_or_default();
    let bind = match &raw.bind {
        Some(b) => {
            if *b.get_ref() == BindScope::Multicast && protocol == ProtocolScope::Tcp {
                return Err(src.error(
                    Some(&b.span()),
                    &format!("{key}.bind"),
                    "a TCP socket cannot listen on a multicast address: \
                     `bind = \"multicast\"` needs `protocol = \"udp\"` (or \"any\")",
                ));
            }
            *b.get_ref()
        }
        None => BindScope::default(),
    };
    Ok(AllowEntry {
        ports,
        protocol,
        bind,
        exe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        policy::Policy,
        record::Severity,
        testing::{T0, detector, detector_with, ip, listen, process, python, udp_listen},
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
    fn udp_ports_are_judged_with_their_own_title_and_key() {
        let mut d = detector();
        let alerts = d.on_event(&udp_listen(T0, python(), "0.0.0.0", 31337), 0);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.title, "Unexpected Port Opened: 31337/udp");
        assert_eq!(a.dedup, "unexpected_listen:/usr/bin/python3.11:31337/udp");
        // A TCP listener on the same port by the same program is another alert.
        let tcp = d.on_event(&listen(T0, python(), "0.0.0.0", 31337), 0);
        assert_eq!(tcp.len(), 1);
        assert_eq!(tcp[0].title, "Unexpected Port Opened: 31337");
        assert_eq!(tcp[0].dedup, "unexpected_listen:/usr/bin/python3.11:31337");
        // The default policy: what a plain server has (a resolver, NTP, a DHCP client, mDNS on
        // its group), anything on loopback.
        for (addr, port) in [
            ("0.0.0.0", 53),
            ("::", 53),
            ("0.0.0.0", 123),
            ("0.0.0.0", 68),
            ("224.0.0.251", 5353),
            ("ff02::fb", 5353),
            ("127.0.0.1", 31338),
            ("::1", 31338),
            ("127.0.0.53", 53),
        ] {
            assert!(
                d.on_event(&udp_listen(T0, python(), addr, port), 0)
                    .is_empty(),
                "{addr}:{port}/udp"
            );
        }
        // 5353 on the wildcard is for the mDNS daemons only; 22, 80 and 443 are TCP's.
        for (addr, port) in [
            ("0.0.0.0", 5353),
            ("0.0.0.0", 22),
            ("0.0.0.0", 80),
            ("::", 443),
        ] {
            assert_eq!(
                d.on_event(&udp_listen(T0, python(), addr, port), 0).len(),
                1,
                "{addr}:{port}/udp"
            );
        }
        let avahi = process(
            600,
            "/usr/sbin/avahi-daemon",
            "avahi-daemon",
            &["avahi-daemon: running [web1.local]"],
        );
        assert!(
            d.on_event(&udp_listen(T0, avahi, "0.0.0.0", 5353), 0)
                .is_empty()
        );
        // 123, 68 and 5353 are UDP's: a TCP listener there alerts.
        for port in [123, 68, 5353] {
            assert_eq!(
                d.on_event(&listen(T0, python(), "0.0.0.0", port), 0).len(),
                1,
                "{port}/tcp"
            );
        }
    }

    #[test]
    fn udp_respects_the_loopback_knob_and_port_exceptions() {
        let mut d = detector_with(
            "[rules.unexpected_listen]\nallow_loopback = false\nexceptions = [{ port = 4000 }]\n",
        );
        assert_eq!(
            d.on_event(&udp_listen(T0, python(), "127.0.0.1", 5555), 0)
                .len(),
            1
        );
        // An exception's port covers both protocols.
        assert!(
            d.on_event(&udp_listen(T0, python(), "0.0.0.0", 4000), 0)
                .is_empty()
        );
        assert!(
            d.on_event(&listen(T0, python(), "0.0.0.0", 4000), 0)
                .is_empty()
        );
    }

    #[test]
    fn allow_entry_protocol() {
        let tcp = entry("{ port = 9000 }");
        let udp = entry("{ port = 9000, protocol = \"udp\" }");
        let any = entry("{ port = 9000, protocol = \"any\" }");
        assert_eq!(tcp.protocol, ProtocolScope::Tcp, "protocol defaults to tcp");
        for (e, on_tcp, on_udp) in [(&tcp, true, false), (&udp, false, true), (&any, true, true)] {
            assert_eq!(e.matches(Protocol::Tcp, 9000, ip("0.0.0.0"), None), on_tcp);
            assert_eq!(e.matches(Protocol::Udp, 9000, ip("0.0.0.0"), None), on_udp);
        }
        let mdns = entry("{ port = 5353, protocol = \"udp\", bind = \"multicast\" }");
        assert!(mdns.matches(Protocol::Udp, 5353, ip("224.0.0.251"), None));
        assert!(mdns.matches(Protocol::Udp, 5353, ip("ff02::fb"), None));
        assert!(!mdns.matches(Protocol::Udp, 5353, ip("0.0.0.0"), None));
    }

    #[test]
    fn allow_entry_protocol_errors_name_file_line_and_key() {
        let err = |text: &str| {
            Policy::from_toml_str(
                &format!("[rules.unexpected_listen]\nallow = [\n  {text},\n]\n"),
                "policy.toml",
            )
            .expect_err("invalid entry")
            .to_string()
        };
        assert_eq!(
            err("{ port = 53, protocol = \"sctp\" }"),
            "policy.toml:3:27: rules.unexpected_listen.allow[0].protocol: unknown variant \
             `sctp`, expected one of `tcp`, `udp`, `any`"
        );
        assert_eq!(
            err("{ port = 5353, bind = \"multicast\" }"),
            "policy.toml:3:25: rules.unexpected_listen.allow[0].bind: a TCP socket cannot \
             listen on a multicast address: `bind = \"multicast\"` needs `protocol = \"udp\"` \
             (or \"any\")"
        );
        assert!(err("{ port = 5353, bind = \"broadcast\" }").starts_with(
            "policy.toml:3:25: rules.unexpected_listen.allow[0].bind: unknown variant \
                 `broadcast`"
        ));
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
        assert!(single.matches(Protocol::Tcp, 5432, ip("0.0.0.0"), Some("/usr/bin/x")));
        assert!(!single.matches(Protocol::Tcp, 5433, ip("0.0.0.0"), Some("/usr/bin/x")));
        let range = entry("{ ports = \"8000-8100\" }");
        for (port, expect) in [
            (7999, false),
            (8000, true),
            (8050, true),
            (8100, true),
            (8101, false),
        ] {
            assert_eq!(
                range.matches(Protocol::Tcp, port, ip("::"), None),
                expect,
                "port {port}"
            );
        }
    }

    #[test]
    fn allow_entry_bind_scope() {
        let any = entry("{ port = 9000, bind = \"any\" }");
        let lo = entry("{ port = 9000, bind = \"loopback\" }");
        for addr in ["0.0.0.0", "::", "10.1.2.3", "127.0.0.1", "::1"] {
            assert!(
                any.matches(Protocol::Tcp, 9000, ip(addr), None),
                "any covers {addr}"
            );
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
                lo.matches(Protocol::Tcp, 9000, ip(addr), None),
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
            Protocol::Tcp,
            5432,
            ip("0.0.0.0"),
            Some("/usr/lib/postgresql/16/bin/postgres")
        ));
        assert!(
            !pg.matches(
                Protocol::Tcp,
                5432,
                ip("0.0.0.0"),
                Some("/usr/lib/postgresql/16/extra/bin/postgres")
            ),
            "* stays in one component"
        );
        assert!(!pg.matches(Protocol::Tcp, 5432, ip("0.0.0.0"), Some("/tmp/postgres")));
        assert!(
            !pg.matches(Protocol::Tcp, 5432, ip("0.0.0.0"), None),
            "an unknown exe matches no owner"
        );
        let base = entry("{ port = 6379, exe = \"redis-server\" }");
        assert!(base.matches(
            Protocol::Tcp,
            6379,
            ip("0.0.0.0"),
            Some("/usr/bin/redis-server")
        ));
        assert!(!base.matches(
            Protocol::Tcp,
            6379,
            ip("0.0.0.0"),
            Some("/usr/bin/redis-server-evil")
        ));
    }
}
