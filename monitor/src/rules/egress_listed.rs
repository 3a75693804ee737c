//! `egress_listed_ip`: any process connects to a listed address: a Tor exit, an address the
//! reputation file calls `malicious`, or one of a named list (a C2 callback to a Feodo-listed
//! server is the classic case). Lists are explicit, so a listed address alerts even inside the
//! special-purpose ranges `webserver_egress` leaves out.
//!
//! Section `[rules.egress_listed_ip]`: only `enabled`, `severity` and `exceptions` (`exe`,
//! `argv_prefix`, `ancestor_exe`, `destination`, `port`: the destination port).

use std::net::SocketAddr;

use super::{Finding, Rule, common_section, exe_key};
use crate::{
    enrich::Context,
    matcher::{RuleSettings, Subject},
    netrange,
    record::{Classification, EventType, RuleId},
};

#[derive(Clone, Debug, PartialEq)]
pub struct EgressListedIp {
    pub settings: RuleSettings,
}

impl Rule for EgressListedIp {
    fn id(&self) -> RuleId {
        RuleId::EgressListedIp
    }

    fn judges(&self) -> &'static [EventType] {
        &[EventType::Connect]
    }

    fn settings(&self) -> &RuleSettings {
        &self.settings
    }

    fn judge<'e>(&self, ctx: &Context<'e>) -> Option<Finding<'e>> {
        let event = ctx.event;
        let enrichment = event.enrichment.as_ref()?;
        // The most specific name for the address: Tor, then a malicious verdict, then a list.
        let what = if enrichment.tor_exit {
            "TOR Exit Node"
        } else if enrichment
            .reputation
            .as_ref()
            .is_some_and(|r| r.classification == Classification::Malicious)
        {
            "Malicious"
        } else {
            enrichment.lists.first()?.as_str()
        };
        let remote = event.socket.as_ref()?.remote?;
        let ip = netrange::canonical(remote.ip);
        let destination = SocketAddr::new(ip, remote.port);
        let exe = event.process.exe.as_deref();
        Some(Finding {
            shell_match: None,
            web_server_via: None,
            title: format!("Connection to {what} Address {destination}"),
            dedup: format!("egress_listed_ip:{}:{ip}:{}", exe_key(exe), remote.port),
            subject: Subject {
                exe,
                argv: &event.process.argv,
                ancestry: &event.ancestry,
                destination: Some(ip),
                port: Some(remote.port),
            },
        })
    }
}

common_section!(EgressListedIp, port: true, destination: true);

#[cfg(test)]
mod tests {
    use crate::{
        record::{Classification, EnrichmentInfo, ReputationInfo, RuleId, Severity},
        testing::{T0, connect, detector, detector_with, python, systemd},
    };

    fn to(dst: &str, port: u16, enrichment: EnrichmentInfo) -> crate::record::EventRecord {
        let mut ev = connect(T0, python(), vec![systemd()], dst, port);
        ev.enrichment = Some(enrichment);
        ev
    }

    #[test]
    fn a_connection_to_a_listed_address_alerts_even_in_special_ranges() {
        let mut d = detector();
        let feodo = EnrichmentInfo {
            lists: vec!["feodo".into()],
            ..EnrichmentInfo::default()
        };
        // 10/8 is excluded by webserver_egress; a list is explicit.
        let alerts = d.on_event(&to("10.77.0.2", 443, feodo.clone()), 0);
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        let a = &alerts[0];
        assert_eq!(
            (a.rule, a.severity),
            (RuleId::EgressListedIp, Severity::High)
        );
        assert_eq!(a.title, "Connection to feodo Address 10.77.0.2:443");
        assert_eq!(
            a.dedup,
            "egress_listed_ip:/usr/bin/python3.11:10.77.0.2:443"
        );
        let tor = EnrichmentInfo {
            tor_exit: true,
            ..feodo.clone()
        };
        assert_eq!(
            d.on_event(&to("fd77::2", 9001, tor), 0)[0].title,
            "Connection to TOR Exit Node Address [fd77::2]:9001"
        );
        let malicious = EnrichmentInfo {
            reputation: Some(ReputationInfo {
                classification: Classification::Malicious,
                name: None,
                tags: vec![],
            }),
            ..feodo.clone()
        };
        assert_eq!(
            d.on_event(&to("10.77.0.9", 8443, malicious), 0)[0].title,
            "Connection to Malicious Address 10.77.0.9:8443"
        );
        // Suspicious, trusted-only or nothing known: no alert.
        let suspicious = EnrichmentInfo {
            reputation: Some(ReputationInfo {
                classification: Classification::Suspicious,
                name: None,
                tags: vec![],
            }),
            trusted: true,
            ..EnrichmentInfo::default()
        };
        assert!(d.on_event(&to("10.77.0.10", 443, suspicious), 0).is_empty());
        assert!(
            d.on_event(&to("10.77.0.11", 443, EnrichmentInfo::default()), 0)
                .is_empty()
        );
        // Exceptions by destination and port.
        let mut d = detector_with(
            "[rules.egress_listed_ip]\nexceptions = [{ destination = \"10.77.0.0/16\", port = 443 }]\n",
        );
        assert!(
            d.on_event(&to("10.77.0.2", 443, feodo.clone()), 0)
                .is_empty()
        );
        assert_eq!(d.on_event(&to("10.77.0.2", 444, feodo), 0).len(), 1);
    }
}
