//! `inbound_tor`: any accepted TCP connection from a Tor exit node, whatever the service. Off by
//! default: a public web site receives Tor traffic legitimately; an admin service should not.
//!
//! Section `[rules.inbound_tor]`: only `enabled`, `severity` and `exceptions` (`exe`,
//! `argv_prefix`, `ancestor_exe`, `port`: the local port the connection came in on).

use super::{Finding, Rule, common_section};
use crate::{
    enrich::Context,
    matcher::{RuleSettings, Subject},
    record::{EventType, RuleId},
};

#[derive(Clone, Debug, PartialEq)]
pub struct InboundTor {
    pub settings: RuleSettings,
}

impl Rule for InboundTor {
    fn id(&self) -> RuleId {
        RuleId::InboundTor
    }

    fn judges(&self) -> &'static [EventType] {
        &[EventType::Accept]
    }

    fn settings(&self) -> &RuleSettings {
        &self.settings
    }

    fn judge<'e>(&self, ctx: &Context<'e>) -> Option<Finding<'e>> {
        let event = ctx.event;
        if !event.enrichment.as_ref()?.tor_exit {
            return None;
        }
        let socket = event.socket.as_ref()?;
        let remote = socket.remote?;
        let port = socket.local.port;
        Some(Finding {
            shell_match: None,
            web_server_via: None,
            title: format!(
                "Inbound Connection from TOR Exit Node ({}) to port {port}",
                remote.ip
            ),
            dedup: format!("inbound_tor:{}:{port}", remote.ip),
            subject: Subject {
                exe: event.process.exe.as_deref(),
                argv: &event.process.argv,
                ancestry: &event.ancestry,
                destination: None,
                port: Some(port),
            },
        })
    }
}

common_section!(InboundTor, port: true, destination: false);

#[cfg(test)]
mod tests {
    use crate::{
        record::{EnrichmentInfo, EventRecord, EventType, RuleId, Severity},
        testing::{T0, connect, detector, detector_with, process, systemd},
    };

    fn accept(enrichment: EnrichmentInfo) -> EventRecord {
        let nginx = process(800, "/usr/sbin/nginx", "nginx", &["nginx: worker process"]);
        let mut ev = connect(T0, nginx, vec![systemd()], "10.77.0.2", 51_000);
        ev.event = EventType::Accept;
        let socket = ev.socket.as_mut().unwrap();
        socket.local.port = 443;
        ev.enrichment = Some(enrichment);
        ev
    }

    #[test]
    fn off_by_default_and_about_tor_only_when_on() {
        let tor = EnrichmentInfo {
            tor_exit: true,
            ..EnrichmentInfo::default()
        };
        assert!(detector().on_event(&accept(tor.clone()), 0).is_empty());
        let mut d = detector_with("[rules.inbound_tor]\nenabled = true\n");
        let alerts = d.on_event(&accept(tor), 0);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!((a.rule, a.severity), (RuleId::InboundTor, Severity::Medium));
        assert_eq!(
            a.title,
            "Inbound Connection from TOR Exit Node (10.77.0.2) to port 443"
        );
        assert_eq!(a.dedup, "inbound_tor:10.77.0.2:443");
        assert!(d.on_event(&accept(EnrichmentInfo::default()), 0).is_empty());
    }
}
