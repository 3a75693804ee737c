//! The detector: runs every rule of a policy ([`crate::rules`]) over each event with the
//! preamble they share — enabled, the rule's exceptions, its severity — then [`dedup`] and
//! `events_lost`, and builds the alert records (docs/alerts.md, docs/alert.schema.json).
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

use std::sync::Arc;

use jiff::Timestamp;

use crate::{
    enrich::Context,
    policy::Policy,
    record::{AlertRecord, DedupStatus, EventRecord, Verdict},
};

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

    /// The policy the rules judge by.
    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    /// Judges by `policy` from now on (a SIGHUP reload). Dedup state is kept, so a reload does
    /// not raise every alert again; a new `dedup_window` applies to the keys already held.
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        self.dedup.set_window(policy.dedup_window);
        self.policy = policy;
    }

    /// Judges one event (live, start-up baseline with `pre_existing`, or replayed): every rule
    /// that judges its kind, in the policy's order, each raising at most one alert.
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
        let ctx = Context::new(event, self.policy.context_programs());
        let mut alerts = Vec::new();
        for rule in self.policy.rules.all() {
            let settings = rule.settings();
            if !settings.enabled || !rule.judges().contains(&event.event) {
                continue;
            }
            let Some(finding) = rule.judge(&ctx) else {
                continue;
            };
            if settings
                .exceptions
                .iter()
                .any(|e| e.matches(&finding.subject))
            {
                continue;
            }
            let dedup::Verdict::Print { suppressed } = self.dedup.check(&finding.dedup, now) else {
                continue;
            };
            let events_lost = drops_total.saturating_sub(self.drops_at_last_alert);
            self.drops_at_last_alert = drops_total;
            let verdict = Verdict {
                rule: rule.id(),
                severity: settings.severity,
                title: finding.title,
                dedup: finding.dedup,
                shell_match: finding.shell_match,
                web_server_via: finding.web_server_via,
            };
            alerts.push(AlertRecord::new(event, verdict, suppressed, events_lost));
        }
        alerts
    }

    /// For the status record: held back ever, held back and not yet reported on an alert, and
    /// the 32 keys owing the most.
    pub fn status(&self) -> DedupStatus {
        let mut pending: Vec<(&str, u64)> = self.dedup.pending().collect();
        pending.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        DedupStatus {
            suppressed_by_key: pending
                .iter()
                .take(32)
                .map(|(k, n)| ((*k).to_owned(), *n))
                .collect(),
            suppressed_pending: pending.iter().map(|(_, n)| n).sum(),
            suppressed_total: self.dedup.suppressed_total(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        record::{EventType, Severity},
        testing::{
            T0, connect, detector, detector_with, event, fpm_master, fpm_worker, listen, process,
            python,
        },
    };

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
        let mut d = detector_with(text);
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
        let status = serde_json::to_value(d.status()).unwrap();
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
        let status = serde_json::to_value(d.status()).unwrap();
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
}
