//! Detections: each rule judges one event kind ([`listen`], [`egress`], [`shell`], on the
//! lineage helpers of [`lineage`]); the [`Detector`] adds severity, [`dedup`] and `events_lost`
//! and builds the alert record (docs/alerts.md, docs/alert.schema.json).
//!
//! Dedup keys (docs/alerts.md):
//! - `unexpected_listen:<exe>:<port>`
//! - `webserver_egress:<web server exe>:<exe>:<destination ip>:<destination port>`
//! - `webserver_shell:<web server exe>:<shell exe>`
//!
//! `<exe>` is the executable path, or `?` when it is unknown; the web server is the nearest one
//! in the lineage (the process, a program it replaced by exec, its recorded `web_server`, or its
//! `ancestry`), by the path that matched the policy.

pub mod dedup;
pub mod egress;
pub mod lineage;
pub mod listen;
pub mod shell;

use std::sync::Arc;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use crate::policy::Severity;
use crate::{
    policy::Policy,
    record::{Ancestor, EventRecord, EventType, ProcessInfo, SocketInfo, WebServerInfo},
};

/// The rule ids: part of the output contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleId {
    UnexpectedListen,
    WebserverEgress,
    WebserverShell,
}

impl RuleId {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnexpectedListen => "unexpected_listen",
            Self::WebserverEgress => "webserver_egress",
            Self::WebserverShell => "webserver_shell",
        }
    }
}

/// What a rule found, before severity, dedup and loss accounting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule: RuleId,
    pub title: String,
    pub dedup: String,
}

/// The executable for titles and dedup keys.
pub(crate) fn exe_key(exe: Option<&str>) -> &str {
    exe.unwrap_or("?")
}

/// An `{"type":"alert", ...}` record: the event's envelope plus the rule's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Always `"alert"`.
    #[serde(rename = "type")]
    pub record_type: String,
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
    pub ancestry: Vec<Ancestor>,
    /// The event's `web_server`: the nearest web server in the lineage, at any depth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_server: Option<WebServerInfo>,
    pub socket: Option<SocketInfo>,
    pub pre_existing: bool,
    /// Repeats of this dedup key held back since the previous alert with it.
    pub suppressed: u64,
    /// Kernel ring-buffer drops since the previous alert (of any key).
    pub events_lost: u64,
}

/// Runs every rule of a policy over events, with dedup and `events_lost` accounting.
pub struct Detector {
    policy: Arc<Policy>,
    dedup: dedup::Dedup,
    /// `drops_total` when the previous alert was printed.
    drops_at_last_alert: u64,
    /// The newest event time seen, standing in for an event whose time does not parse.
    last_time: Timestamp,
}

impl Detector {
    pub fn new(policy: Arc<Policy>) -> Self {
        let dedup = dedup::Dedup::new(policy.dedup_window);
        Self {
            policy,
            dedup,
            drops_at_last_alert: 0,
            last_time: Timestamp::UNIX_EPOCH,
        }
    }

    /// Judges one event (live, start-up baseline with `pre_existing`, or replayed).
    /// `drops_total` is the kernel's cumulative ring-buffer drop count at this moment; alerts
    /// carry the difference since the previous alert as `events_lost`.
    pub fn on_event(&mut self, event: &EventRecord, drops_total: u64) -> Vec<AlertRecord> {
        // The event's own time drives dedup windows, so a replay matches the live run. The
        // daemon always writes RFC 3339; replay rejects lines that are not.
        let now = match event.time.parse::<Timestamp>() {
            Ok(t) => {
                self.last_time = self.last_time.max(t);
                t
            }
            Err(_) => self.last_time,
        };
        let finding = match event.event {
            EventType::Listen => listen::judge(&self.policy, event),
            EventType::Connect => egress::judge(&self.policy, event),
            EventType::Exec => shell::judge(&self.policy, event),
            EventType::Exit => None,
        };
        let Some(finding) = finding else {
            return Vec::new();
        };
        let dedup::Verdict::Print { suppressed } = self.dedup.check(&finding.dedup, now) else {
            return Vec::new();
        };
        let events_lost = drops_total.saturating_sub(self.drops_at_last_alert);
        self.drops_at_last_alert = drops_total;
        vec![AlertRecord {
            record_type: "alert".to_owned(),
            rule: finding.rule,
            severity: self.severity(finding.rule),
            title: finding.title,
            time: event.time.clone(),
            host: event.host.clone(),
            event: event.event,
            dedup: finding.dedup,
            process: event.process.clone(),
            filename: event.filename.clone(),
            ancestry: event.ancestry.clone(),
            web_server: event.web_server.clone(),
            socket: event.socket.clone(),
            pre_existing: event.pre_existing,
            suppressed,
            events_lost,
        }]
    }

    fn severity(&self, rule: RuleId) -> Severity {
        match rule {
            RuleId::UnexpectedListen => self.policy.unexpected_listen.settings.severity,
            RuleId::WebserverEgress => self.policy.webserver_egress.settings.severity,
            RuleId::WebserverShell => self.policy.webserver_shell.settings.severity,
        }
    }

    /// For the status record: `{"suppressed_total": held back ever, "suppressed_pending": held
    /// back and not yet reported on an alert, "suppressed_by_key": {key: n}}` (the 32 keys owing
    /// the most).
    pub fn status(&self) -> serde_json::Value {
        let mut pending: Vec<(&str, u64)> = self.dedup.pending().collect();
        pending.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let total_pending: u64 = pending.iter().map(|(_, n)| n).sum();
        let by_key: serde_json::Map<String, serde_json::Value> = pending
            .iter()
            .take(32)
            .map(|(k, n)| ((*k).to_owned(), serde_json::Value::from(*n)))
            .collect();
        serde_json::json!({
            "suppressed_total": self.dedup.suppressed_total(),
            "suppressed_pending": total_pending,
            "suppressed_by_key": by_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::record::{Endpoint, Family, Protocol};

    fn ancestor(pid: u32, exe: &str, comm: &str, argv: &[&str]) -> Ancestor {
        Ancestor {
            pid,
            exe: Some(exe.to_owned()),
            comm: comm.to_owned(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn fpm_master() -> Ancestor {
        ancestor(
            900,
            "/usr/sbin/php-fpm8.2",
            "php-fpm8.2",
            &["php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)"],
        )
    }

    fn fpm_worker() -> Ancestor {
        ancestor(
            901,
            "/usr/sbin/php-fpm8.2",
            "php-fpm8.2",
            &["php-fpm: pool www"],
        )
    }

    fn systemd() -> Ancestor {
        ancestor(1, "/usr/lib/systemd/systemd", "systemd", &["/sbin/init"])
    }

    fn process(pid: u32, exe: &str, comm: &str, argv: &[&str]) -> ProcessInfo {
        ProcessInfo {
            pid,
            ppid: 0,
            uid: 33,
            gid: 33,
            user: Some("www-data".to_owned()),
            comm: comm.to_owned(),
            exe: Some(exe.to_owned()),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            argv_truncated: false,
            cgroup_id: 1,
        }
    }

    fn event(
        kind: EventType,
        time: &str,
        mut process: ProcessInfo,
        ancestry: Vec<Ancestor>,
    ) -> EventRecord {
        process.ppid = ancestry.first().map_or(0, |a| a.pid);
        EventRecord {
            record_type: "event".to_owned(),
            event: kind,
            time: time.to_owned(),
            host: "web1".to_owned(),
            process,
            filename: None,
            exit_code: None,
            socket: None,
            ancestry,
            web_server: None,
            pre_existing: false,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn listen(time: &str, process: ProcessInfo, local: &str, port: u16) -> EventRecord {
        let mut ev = event(EventType::Listen, time, process, vec![systemd()]);
        let local = ip(local);
        ev.socket = Some(SocketInfo {
            protocol: Protocol::Tcp,
            family: if local.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            local: Endpoint { ip: local, port },
            remote: None,
            mapped_ipv4: false,
        });
        ev
    }

    fn connect(
        time: &str,
        process: ProcessInfo,
        ancestry: Vec<Ancestor>,
        dst: &str,
        port: u16,
    ) -> EventRecord {
        let mut ev = event(EventType::Connect, time, process, ancestry);
        let dst = ip(dst);
        ev.socket = Some(SocketInfo {
            protocol: Protocol::Tcp,
            family: if dst.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            local: Endpoint {
                ip: if dst.is_ipv4() {
                    ip("10.0.0.5")
                } else {
                    ip("2001:db8::5")
                },
                port: 40000,
            },
            remote: Some(Endpoint { ip: dst, port }),
            mapped_ipv4: false,
        });
        ev
    }

    fn detector() -> Detector {
        Detector::new(Arc::new(Policy::embedded_default()))
    }

    fn with_policy(text: &str) -> Detector {
        let policy = Policy::from_toml_str(text, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        Detector::new(Arc::new(policy))
    }

    const T0: &str = "2026-11-23T05:00:00.000000001Z";

    fn python() -> ProcessInfo {
        process(
            4000,
            "/usr/bin/python3.11",
            "python3",
            &["python3", "-m", "http.server", "4444"],
        )
    }

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
        let mut d = with_policy(
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

    #[test]
    fn shell_from_php_fpm_shows_sh_c_argv() {
        let mut d = detector();
        let mut ev = event(
            EventType::Exec,
            T0,
            process(4100, "/usr/bin/dash", "sh", &["sh", "-c", "--", "id"]),
            vec![fpm_worker(), fpm_master(), systemd()],
        );
        ev.filename = Some("/bin/sh".to_owned());
        let alerts = d.on_event(&ev, 0);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(
            (a.rule, a.severity),
            (RuleId::WebserverShell, Severity::High)
        );
        assert_eq!(
            a.title,
            "Shell spawned by web server: /usr/bin/dash (parent php-fpm8.2)"
        );
        assert_eq!(
            a.dedup,
            "webserver_shell:/usr/sbin/php-fpm8.2:/usr/bin/dash"
        );
        assert_eq!(a.process.argv, ["sh", "-c", "--", "id"]);
        assert_eq!(a.ancestry[0].exe.as_deref(), Some("/usr/sbin/php-fpm8.2"));
        assert_eq!(a.filename.as_deref(), Some("/bin/sh"));
    }

    #[test]
    fn shell_deeper_under_web_server_and_guards() {
        let mut d = detector();
        // nginx → perl → bash: the web server is a grandparent.
        let perl = ancestor(5000, "/usr/bin/perl", "perl", &["perl", "cgi.pl"]);
        let nginx = ancestor(800, "/usr/sbin/nginx", "nginx", &["nginx: worker process"]);
        let ev = event(
            EventType::Exec,
            T0,
            process(5001, "/usr/bin/bash", "bash", &["bash", "-i"]),
            vec![perl, nginx, systemd()],
        );
        let alerts = d.on_event(&ev, 0);
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            alerts[0].title,
            "Shell spawned by web server: /usr/bin/bash (ancestor nginx)"
        );

        // A shell from a login shell: no web server anywhere.
        let sshd = ancestor(600, "/usr/sbin/sshd", "sshd", &["sshd: admin [priv]"]);
        let login = ancestor(610, "/usr/bin/bash", "bash", &["-bash"]);
        let ev = event(
            EventType::Exec,
            T0,
            process(620, "/usr/bin/dash", "sh", &["sh"]),
            vec![login, sshd, systemd()],
        );
        assert!(d.on_event(&ev, 0).is_empty());

        // A python process renamed to "nginx" spawns a shell: comm makes no web server.
        let fake = ancestor(
            630,
            "/usr/bin/python3.11",
            "nginx",
            &["nginx: master process"],
        );
        let ev = event(
            EventType::Exec,
            T0,
            process(631, "/usr/bin/dash", "sh", &["sh", "-c", "id"]),
            vec![fake.clone(), systemd()],
        );
        assert!(d.on_event(&ev, 0).is_empty());
        // …and its connection to an odd port raises no egress alert either.
        let ev = connect(
            T0,
            process(630, "/usr/bin/python3.11", "nginx", &["nginx"]),
            vec![systemd()],
            "93.184.216.34",
            4444,
        );
        assert!(d.on_event(&ev, 0).is_empty());

        // php-fpm running a non-shell program: not this rule.
        let ev = event(
            EventType::Exec,
            T0,
            process(640, "/usr/bin/convert", "convert", &["convert"]),
            vec![fpm_worker(), fpm_master()],
        );
        assert!(d.on_event(&ev, 0).is_empty());
    }

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
    fn rules_can_be_disabled_reseveritied_and_excepted() {
        let text = r#"
[rules.unexpected_listen]
enabled = false
[rules.webserver_egress]
severity = "CRITICAL"
exceptions = [{ destination = "93.184.216.0/24", port = 4444 }]
[rules.webserver_shell]
exceptions = [{ argv_prefix = ["sh", "-c", "--", "/usr/bin/convert"] }]
"#;
        let mut d = with_policy(text);
        assert!(
            d.on_event(&listen(T0, python(), "0.0.0.0", 4444), 0)
                .is_empty()
        );
        let nginx = process(801, "/usr/sbin/nginx", "nginx", &["nginx: worker process"]);
        assert!(
            d.on_event(
                &connect(T0, nginx.clone(), vec![], "93.184.216.34", 4444),
                0
            )
            .is_empty()
        );
        let alerts = d.on_event(&connect(T0, nginx, vec![], "93.184.216.34", 4445), 0);
        assert_eq!(alerts.first().map(|a| a.severity), Some(Severity::Critical));
        let shell = |argv: &[&str]| {
            event(
                EventType::Exec,
                T0,
                process(4100, "/usr/bin/dash", "sh", argv),
                vec![fpm_worker(), fpm_master()],
            )
        };
        assert!(
            d.on_event(
                &shell(&["sh", "-c", "--", "/usr/bin/convert", "a.png", "b.jpg"]),
                0
            )
            .is_empty()
        );
        assert_eq!(d.on_event(&shell(&["sh", "-c", "--", "id"]), 0).len(), 1);
    }

    #[test]
    fn dedup_by_event_time_with_suppressed_count_and_status() {
        let mut d = detector();
        let at = |t: &str| listen(t, python(), "0.0.0.0", 4444);
        assert_eq!(d.on_event(&at("2026-11-23T05:00:00Z"), 0).len(), 1);
        assert!(d.on_event(&at("2026-11-23T05:10:00Z"), 0).is_empty());
        assert!(d.on_event(&at("2026-11-23T05:59:00Z"), 0).is_empty());
        let status = d.status();
        assert_eq!(status["suppressed_pending"], 2);
        assert_eq!(
            status["suppressed_by_key"]["unexpected_listen:/usr/bin/python3.11:4444"],
            2
        );
        // A different key is not held back by this one.
        assert_eq!(
            d.on_event(
                &listen("2026-11-23T05:30:00Z", python(), "0.0.0.0", 4445),
                0
            )
            .len(),
            1
        );
        let alerts = d.on_event(&at("2026-11-23T06:00:00Z"), 0);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].suppressed, 2);
        let status = d.status();
        assert_eq!(status["suppressed_total"], 2);
        assert_eq!(status["suppressed_pending"], 0);
    }

    #[test]
    fn events_lost_is_the_drop_delta_between_printed_alerts() {
        let mut d = detector();
        let port = |p: u16| listen(T0, python(), "0.0.0.0", p);
        assert_eq!(d.on_event(&port(4001), 5)[0].events_lost, 5);
        // Events without alerts, and suppressed repeats, do not reset the count.
        assert!(
            d.on_event(&listen(T0, python(), "127.0.0.1", 4002), 7)
                .is_empty()
        );
        assert!(d.on_event(&port(4001), 9).is_empty());
        assert_eq!(d.on_event(&port(4003), 12)[0].events_lost, 7);
        assert_eq!(d.on_event(&port(4004), 12)[0].events_lost, 0);
    }

    #[test]
    fn unparsable_time_falls_back_to_the_newest_seen() {
        let mut d = detector();
        assert_eq!(
            d.on_event(
                &listen("2026-11-23T05:00:00Z", python(), "0.0.0.0", 4444),
                0
            )
            .len(),
            1
        );
        assert!(
            d.on_event(&listen("not a time", python(), "0.0.0.0", 4444), 0)
                .is_empty()
        );
    }

    fn tracked(pid: u32, exe: &str, filename: Option<&str>, argv: &[&str]) -> WebServerInfo {
        WebServerInfo {
            pid,
            exe: Some(exe.to_owned()),
            filename: filename.map(str::to_owned),
            comm: "x".to_owned(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn tracked_web_server_beyond_the_recorded_ancestry() {
        let mut d = detector();
        // Double fork: the shell's recorded ancestry is only init, the table kept php-fpm.
        let mut ev = event(
            EventType::Exec,
            T0,
            process(300, "/usr/bin/dash", "sh", &["sh", "-i"]),
            vec![systemd()],
        );
        ev.web_server = Some(tracked(
            200,
            "/usr/sbin/php-fpm8.2",
            None,
            &["php-fpm: pool www"],
        ));
        let alerts = d.on_event(&ev, 0);
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            alerts[0].title,
            "Shell spawned by web server: /usr/bin/dash (ancestor php-fpm8.2)"
        );
        assert_eq!(
            alerts[0].web_server.as_ref().map(|w| w.pid),
            Some(200),
            "carried onto the alert"
        );
        // Its connection out, 36 s later, 18 generations down: same verdict.
        let mut ev = connect(
            T0,
            process(400, "/usr/bin/nc.openbsd", "nc", &["nc"]),
            vec![systemd()],
            "93.184.216.34",
            4444,
        );
        ev.web_server = Some(tracked(200, "/usr/sbin/php-fpm8.2", None, &[]));
        let alerts = d.on_event(&ev, 0);
        assert_eq!(
            alerts[0].title,
            "Web server egress: /usr/bin/nc.openbsd -> 93.184.216.34:4444 (descendant of php-fpm8.2)"
        );
        assert_eq!(
            alerts[0].dedup,
            "webserver_egress:/usr/sbin/php-fpm8.2:/usr/bin/nc.openbsd:93.184.216.34:4444"
        );
    }

    #[test]
    fn web_server_replaced_by_exec_in_place() {
        let mut d = detector();
        let mut ev = event(
            EventType::Exec,
            T0,
            process(200, "/usr/bin/dash", "sh", &["sh", "-i"]),
            vec![systemd()],
        );
        ev.filename = Some("/bin/sh".to_owned());
        ev.web_server = Some(tracked(
            200,
            "/usr/sbin/php-fpm8.2",
            Some("/usr/sbin/php-fpm8.2"),
            &["php-fpm8.2"],
        ));
        let alerts = d.on_event(&ev, 0);
        assert_eq!(
            alerts[0].title,
            "Shell spawned by web server: /usr/bin/dash (in place of php-fpm8.2)"
        );
        let mut ev = connect(
            T0,
            process(200, "/usr/bin/dash", "sh", &["sh", "-i"]),
            vec![systemd()],
            "93.184.216.34",
            4444,
        );
        ev.web_server = Some(tracked(200, "/usr/sbin/php-fpm8.2", None, &["php-fpm8.2"]));
        assert_eq!(
            d.on_event(&ev, 0)[0].title,
            "Web server egress: /usr/bin/dash -> 93.184.216.34:4444 (in place of php-fpm8.2)"
        );
        // A shell the policy itself calls a web server is not "under" itself.
        let mut d = with_policy("web_servers = [\"dash\"]\n");
        let mut ev = event(
            EventType::Exec,
            T0,
            process(210, "/usr/bin/dash", "sh", &["sh"]),
            vec![systemd()],
        );
        ev.filename = Some("/bin/sh".to_owned());
        ev.web_server = Some(tracked(210, "/usr/bin/dash", Some("/bin/sh"), &["sh"]));
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
        let mut d = with_policy("web_servers = [\"nginx\"]\n");
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
}
