//! `webserver_egress`: a web server, or any process descending from one (at any depth, or
//! running in place of one after an exec), opens a TCP connection to a port outside the allowed
//! egress ports and an address outside the excluded networks. A web shell connects out from a
//! child (php-fpm → sh → nc), so the whole lineage counts.
//!
//! Section `[rules.webserver_egress]`: `allowed_ports`, `excluded_networks`, besides `enabled`,
//! `severity` and `exceptions` (`exe`, `argv_prefix`, `ancestor_exe`, `destination`, `port`: the
//! destination port).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::{Finding, Rule, Section, exe_key};
use crate::{
    enrich::Context,
    matcher::{PortRange, RuleSettings, Subject},
    netrange::{self, Cidr},
    record::{EventType, Protocol, RuleId, Severity, ToolKind, WebServerVia},
    validate::{
        self, ExceptionInput, ExceptionKinds, PolicyError, PortInput, Source, or_base, port_input,
        settings_input, unspanned,
    },
};

#[derive(Clone, Debug, PartialEq)]
pub struct WebserverEgress {
    pub settings: RuleSettings,
    pub allowed_ports: Vec<PortRange>,
    pub excluded_networks: Vec<Cidr>,
}

impl Rule for WebserverEgress {
    fn id(&self) -> RuleId {
        RuleId::WebserverEgress
    }

    fn judges(&self) -> &'static [EventType] {
        &[EventType::Connect]
    }

    fn settings(&self) -> &RuleSettings {
        &self.settings
    }

    fn judge<'e>(&self, ctx: &Context<'e>) -> Option<Finding<'e>> {
        let event = ctx.event;
        let socket = event.socket.as_ref()?;
        let remote = socket.remote?;
        // An IPv6 socket reaching ::ffff:a.b.c.d talks to a.b.c.d: judge that.
        let ip = netrange::canonical(remote.ip);
        let port = remote.port;
        let udp = socket.protocol == Protocol::Udp;
        // Every connect on the host passes here: the cheap destination checks first, lineage
        // (glob matching over the process, its web server and its ancestry) only for what is
        // left. DNS is every program's resolver, never an alert over UDP.
        if udp && port == 53 {
            return None;
        }
        if self.excluded_networks.iter().any(|net| net.contains(ip)) {
            return None;
        }
        let allowed = self.allowed_ports.iter().any(|r| r.contains(port));
        let web_server = ctx.web_server()?;
        // A shell or interpreter under a web server gets no allowed port: a reverse shell to
        // 443 is still one. The web server's own connections keep `allowed_ports`.
        let tool = ctx.tool();
        if allowed && tool.is_none() {
            return None;
        }
        let exe = event.process.exe.as_deref();
        let destination = SocketAddr::new(ip, port);
        let proto = if udp { "/udp" } else { "" };
        let mut relation = if web_server.via == WebServerVia::User {
            format!(" ({})", web_server.relation())
        } else if web_server.depth == 0 && !web_server.replaced {
            String::new()
        } else if web_server.depth == 0 {
            format!(" (in place of {})", web_server.name())
        } else {
            format!(" (descendant of {})", web_server.name())
        };
        if allowed && let Some(t) = tool {
            // Say why an allowed port alerted.
            let what = match t.kind {
                ToolKind::Shell => "shell",
                ToolKind::Tool => "tool",
            };
            relation = format!(
                "{relation} [{what} {}: no port allowed]",
                exe_key(t.exe.as_deref())
            );
        }
        Some(Finding {
            title: format!(
                "Web server egress: {} -> {destination}{proto}{relation}",
                exe_key(exe)
            ),
            dedup: format!(
                "webserver_egress:{}:{}:{ip}:{port}{proto}",
                web_server.key(),
                exe_key(exe)
            ),
            subject: Subject {
                exe,
                argv: &event.process.argv,
                ancestry: &event.ancestry,
                destination: Some(ip),
                port: Some(port),
            },
            shell_match: None,
            web_server_via: Some(web_server.via),
        })
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EgressInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_ports: Option<Vec<Spanned<PortInput>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    excluded_networks: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exceptions: Option<Vec<Spanned<ExceptionInput>>>,
}

impl Section for WebserverEgress {
    type Input = EgressInput;

    fn validate(
        input: EgressInput,
        base: Option<&Self>,
        key: &str,
        src: &Source<'_>,
    ) -> Result<Self, PolicyError> {
        let allowed_ports = match input.allowed_ports {
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, p)| {
                        validate::port_value(p, &format!("{key}.allowed_ports[{i}]"), src)
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        let excluded_networks = match input.excluded_networks {
            Some(list) => Some(
                list.iter()
                    .enumerate()
                    .map(|(i, c)| validate::cidr(c, &format!("{key}.excluded_networks[{i}]"), src))
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
                    destination: true,
                },
                src,
            )?,
            allowed_ports: or_base(
                allowed_ports,
                base.map(|b| b.allowed_ports.clone()),
                src,
                &format!("{key}.allowed_ports"),
            )?,
            excluded_networks: or_base(
                excluded_networks,
                base.map(|b| b.excluded_networks.clone()),
                src,
                &format!("{key}.excluded_networks"),
            )?,
        })
    }

    fn to_input(&self) -> EgressInput {
        let (enabled, severity, exceptions) = settings_input(&self.settings);
        EgressInput {
            enabled,
            severity,
            allowed_ports: Some(
                self.allowed_ports
                    .iter()
                    .map(|r| unspanned(port_input(*r)))
                    .collect(),
            ),
            excluded_networks: Some(
                self.excluded_networks
                    .iter()
                    .map(|c| unspanned(c.to_string()))
                    .collect(),
            ),
            exceptions,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        record::{
            EventType, MatchKind, Protocol, RuleId, Severity, ToolInfo, ToolKind, WebServerInfo,
            WebServerVia,
        },
        testing::{
            T0, ancestor, connect, detector, detector_with, event, fpm_master, fpm_worker, process,
            python, systemd, tracked,
        },
    };

    #[test]
    fn egress_from_web_server_and_its_descendants() {
        let mut d = detector();
        let nginx = process(801, "/usr/sbin/nginx", "nginx", &["nginx: worker process"]);
        let master = ancestor(800, "/usr/sbin/nginx", "nginx", &["nginx: master process"]);
        let alerts = d.on_event(
            &connect(
                T0,
                nginx.clone(),
                vec![master.clone(), systemd()],
                "93.184.216.34",
                4444,
            ),
            0,
        );
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(
            (a.rule, a.severity),
            (RuleId::WebserverEgress, Severity::Medium)
        );
        assert_eq!(
            a.title,
            "Web server egress: /usr/sbin/nginx -> 93.184.216.34:4444"
        );
        assert_eq!(
            a.dedup,
            "webserver_egress:/usr/sbin/nginx:/usr/sbin/nginx:93.184.216.34:4444"
        );

        // Allowed port, excluded networks (both families, mapped): nothing.
        for (dst, port) in [
            ("93.184.216.34", 443),
            ("10.1.2.3", 4444),
            ("127.0.0.1", 4444),
            ("::ffff:192.168.1.1", 4444),
            ("fd12::1", 4444),
            ("::1", 4444),
            ("169.254.169.254", 4444),
        ] {
            let ev = connect(
                T0,
                nginx.clone(),
                vec![master.clone(), systemd()],
                dst,
                port,
            );
            assert!(d.on_event(&ev, 0).is_empty(), "{dst}:{port}");
        }
        // A mapped public address is judged as IPv4 and keyed by it.
        let ev = connect(
            T0,
            nginx.clone(),
            vec![master.clone()],
            "::ffff:93.184.216.35",
            4444,
        );
        let alerts = d.on_event(&ev, 0);
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            alerts[0].dedup,
            "webserver_egress:/usr/sbin/nginx:/usr/sbin/nginx:93.184.216.35:4444"
        );

        // Great-grandchild of php-fpm: php-fpm → sh → python → nc.
        let chain = vec![
            ancestor(4201, "/usr/bin/python3.11", "python3", &["python3", "x.py"]),
            ancestor(
                4200,
                "/usr/bin/dash",
                "sh",
                &["sh", "-c", "--", "python3 x.py"],
            ),
            fpm_worker(),
            fpm_master(),
            systemd(),
        ];
        let nc = process(
            4202,
            "/usr/bin/nc.openbsd",
            "nc",
            &["nc", "2001:4860::8888", "4444"],
        );
        let alerts = d.on_event(&connect(T0, nc, chain, "2001:4860::8888", 4444), 0);
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            alerts[0].title,
            "Web server egress: /usr/bin/nc.openbsd -> [2001:4860::8888]:4444 (descendant of php-fpm8.2)"
        );
        assert_eq!(
            alerts[0].dedup,
            "webserver_egress:/usr/sbin/php-fpm8.2:/usr/bin/nc.openbsd:2001:4860::8888:4444"
        );

        // Not under a web server at all.
        let ev = connect(T0, python(), vec![systemd()], "93.184.216.34", 4444);
        assert!(d.on_event(&ev, 0).is_empty());
    }

    #[test]
    fn script_server_by_filename_and_replay_policy() {
        let mut d = detector();
        // A gunicorn worker's child connects out: gunicorn runs as python.
        let gunicorn = tracked(
            500,
            "/usr/bin/python3.11",
            Some("/usr/bin/gunicorn"),
            &["/usr/bin/python3", "/usr/bin/gunicorn", "app:app"],
        );
        let mut ev = connect(
            T0,
            process(502, "/usr/bin/curl", "curl", &["curl"]),
            vec![ancestor(
                500,
                "/usr/bin/python3.11",
                "gunicorn",
                &["/usr/bin/python3", "/usr/bin/gunicorn"],
            )],
            "93.184.216.34",
            4444,
        );
        ev.web_server = Some(gunicorn.clone());
        let alerts = d.on_event(&ev, 0);
        assert_eq!(
            alerts[0].title,
            "Web server egress: /usr/bin/curl -> 93.184.216.34:4444 (descendant of gunicorn)"
        );
        assert_eq!(
            alerts[0].dedup,
            "webserver_egress:/usr/bin/gunicorn:/usr/bin/curl:93.184.216.34:4444"
        );
        // gunicorn itself connecting out: named by the filename of its recorded self.
        let mut own = event(
            EventType::Connect,
            T0,
            process(500, "/usr/bin/python3.11", "gunicorn", &["gunicorn"]),
            vec![systemd()],
        );
        own.socket = ev.socket.clone();
        own.web_server = Some(WebServerInfo {
            argv: vec!["gunicorn".to_owned()],
            ..gunicorn.clone()
        });
        assert_eq!(
            d.on_event(&own, 0)[0].title,
            "Web server egress: /usr/bin/python3.11 -> 93.184.216.34:4444"
        );
        // The same pid after exec'ing another python program: the recorded gunicorn is the
        // program it replaced.
        own.process.argv = vec!["python3".to_owned(), "-c".to_owned(), "x".to_owned()];
        own.socket.as_mut().unwrap().remote.as_mut().unwrap().port = 4445;
        assert_eq!(
            d.on_event(&own, 0)[0].title,
            "Web server egress: /usr/bin/python3.11 -> 93.184.216.34:4445 (in place of gunicorn)"
        );
        // Replayed under a policy without gunicorn the recorded value does not count.
        let mut d = detector_with("web_servers = [\"nginx\"]\n");
        assert!(d.on_event(&ev, 0).is_empty());
        // The nearest wins: an nginx parent listed in ancestry is nearer than a tracked
        // web server beyond it.
        let mut d = detector();
        let mut ev = connect(
            T0,
            process(700, "/usr/bin/curl", "curl", &["curl"]),
            vec![
                ancestor(699, "/usr/sbin/nginx", "nginx", &["nginx"]),
                systemd(),
            ],
            "93.184.216.34",
            4444,
        );
        ev.web_server = Some(tracked(10, "/usr/sbin/php-fpm8.2", None, &[]));
        assert_eq!(
            d.on_event(&ev, 0)[0].dedup,
            "webserver_egress:/usr/sbin/nginx:/usr/bin/curl:93.184.216.34:4444"
        );
    }

    #[test]
    fn shells_and_tools_under_a_web_server_get_no_allowed_port() {
        let mut d = detector();
        let under_fpm = vec![fpm_worker(), fpm_master(), systemd()];
        // php-fpm's own API call to 443: allowed.
        let own = connect(
            T0,
            process(
                901,
                "/usr/sbin/php-fpm8.2",
                "php-fpm8.2",
                &["php-fpm: pool www"],
            ),
            vec![fpm_master(), systemd()],
            "93.184.216.34",
            443,
        );
        assert!(d.on_event(&own, 0).is_empty());
        // bash's /dev/tcp reverse shell to 443.
        let bash = process(7300, "/usr/bin/bash", "bash", &["bash", "-c", "bash -i"]);
        let ev = connect(T0, bash, under_fpm.clone(), "93.184.216.34", 443);
        let a = &d.on_event(&ev, 0)[0];
        assert_eq!(
            a.title,
            "Web server egress: /usr/bin/bash -> 93.184.216.34:443 (descendant of php-fpm8.2) [shell /usr/bin/bash: no port allowed]"
        );
        assert_eq!(a.web_server_via, Some(WebServerVia::Lineage));
        // python under a shell under php-fpm (by ancestry, a recording without egress_tool).
        let sh = ancestor(7310, "/usr/bin/dash", "sh", &["sh", "-c", "python3 x.py"]);
        let mut chain = vec![sh];
        chain.extend(under_fpm.clone());
        let ev = connect(T0, python(), chain.clone(), "2001:4860::8888", 443);
        assert_eq!(d.on_event(&ev, 0).len(), 1);
        // A plain program under the shell: the shell above it counts.
        let cat = process(7320, "/usr/bin/openssl-fake", "x", &["x"]);
        let ev = connect(T0, cat, chain, "93.184.216.34", 80);
        let a = &d.on_event(&ev, 0)[0];
        assert!(
            a.title.ends_with("[shell /usr/bin/dash: no port allowed]"),
            "{}",
            a.title
        );
        // The tracked egress_tool (a copy of bash recognised by content) counts too.
        let mut ev = connect(
            T0,
            process(7330, "/usr/bin/cat", "cat", &["cat"]),
            under_fpm.clone(),
            "93.184.216.34",
            8080,
        );
        ev.egress_tool = Some(ToolInfo {
            pid: 7329,
            exe: Some("/tmp/.x".to_owned()),
            kind: ToolKind::Shell,
            matched: MatchKind::Content,
        });
        assert_eq!(d.on_event(&ev, 0).len(), 1);
        // Private destinations stay excluded, whoever connects.
        let bash = process(7301, "/usr/bin/bash", "bash", &["bash"]);
        let ev = connect(T0, bash, under_fpm, "10.1.2.3", 443);
        assert!(d.on_event(&ev, 0).is_empty());
    }

    #[test]
    fn udp_egress_and_dns() {
        let mut d = detector();
        let mut udp = |pid: u32, exe: &str, port: u16| {
            let mut ev = connect(
                T0,
                process(pid, exe, "x", &["x"]),
                vec![fpm_worker(), fpm_master(), systemd()],
                "93.184.216.34",
                port,
            );
            ev.socket.as_mut().unwrap().protocol = Protocol::Udp;
            d.on_event(&ev, 0)
        };
        let a = udp(7400, "/usr/bin/bash", 4444);
        assert_eq!(
            a[0].title,
            "Web server egress: /usr/bin/bash -> 93.184.216.34:4444/udp (descendant of php-fpm8.2)"
        );
        assert!(a[0].dedup.ends_with(":93.184.216.34:4444/udp"));
        assert!(
            udp(7401, "/usr/bin/bash", 53).is_empty(),
            "DNS over UDP never alerts"
        );
        assert_eq!(udp(7402, "/usr/bin/nc.openbsd", 443).len(), 1);
        assert!(
            udp(7403, "/usr/sbin/php-fpm8.2", 443).is_empty(),
            "php-fpm's own QUIC to an allowed port"
        );
    }

    #[test]
    fn web_server_user_egress() {
        let mut d = detector();
        let mut p = python();
        p.user = Some("www-data".to_owned());
        let ev = connect(T0, p, vec![systemd()], "93.184.216.34", 443);
        let a = &d.on_event(&ev, 0)[0];
        assert_eq!(a.web_server_via, Some(WebServerVia::User));
        assert!(a.title.contains("(as www-data)"), "{}", a.title);
        assert!(a.dedup.starts_with("webserver_egress:user:www-data:"));
    }
}
