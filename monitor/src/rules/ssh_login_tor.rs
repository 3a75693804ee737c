//! `ssh_login_tor`: an SSH login from a Tor exit node (the `[enrichment]` Tor list). Nobody
//! administers their own server through Tor: CRITICAL by default. Logins from
//! `trusted_networks` never alert.
//!
//! Section `[rules.ssh_login_tor]`: only `enabled`, `severity` and `exceptions` (`exe`,
//! `argv_prefix`, `ancestor_exe`: the session's process).

use super::{Finding, Rule, common_section, process_subject, untrusted_login, user_key};
use crate::{
    enrich::Context,
    matcher::RuleSettings,
    record::{EventType, RuleId},
};

#[derive(Clone, Debug, PartialEq)]
pub struct SshLoginTor {
    pub settings: RuleSettings,
}

impl Rule for SshLoginTor {
    fn id(&self) -> RuleId {
        RuleId::SshLoginTor
    }

    fn judges(&self) -> &'static [EventType] {
        &[EventType::Login]
    }

    fn settings(&self) -> &RuleSettings {
        &self.settings
    }

    fn judge<'e>(&self, ctx: &Context<'e>) -> Option<Finding<'e>> {
        let (login, enrichment) = untrusted_login(ctx.event)?;
        if !enrichment.tor_exit {
            return None;
        }
        let ip = login.remote.ip;
        Some(Finding {
            shell_match: None,
            web_server_via: None,
            title: format!("SSH Connection Established from TOR Exit Node ({ip})"),
            dedup: format!("ssh_login_tor:{}:{ip}", user_key(login)),
            subject: process_subject(ctx.event),
        })
    }
}

common_section!(SshLoginTor, port: false, destination: false);

#[cfg(test)]
mod tests {
    use crate::{
        record::{Classification, EnrichmentInfo, ReputationInfo, RuleId, Severity},
        testing::{T0, detector, detector_with, login},
    };

    fn tor() -> EnrichmentInfo {
        EnrichmentInfo {
            tor_exit: true,
            ..EnrichmentInfo::default()
        }
    }

    #[test]
    fn a_login_from_a_tor_exit_is_critical() {
        let mut d = detector();
        let alerts = d.on_event(&login(T0, "10.77.0.2", tor()), 0);
        assert_eq!(alerts.len(), 1, "{alerts:#?}");
        let a = &alerts[0];
        assert_eq!(
            (a.rule, a.severity),
            (RuleId::SshLoginTor, Severity::Critical)
        );
        assert_eq!(
            a.title,
            "SSH Connection Established from TOR Exit Node (10.77.0.2)"
        );
        assert_eq!(a.dedup, "ssh_login_tor:alice:10.77.0.2");
        assert_eq!(a.login.as_ref().map(|l| l.uid), Some(1001));
        assert_eq!(a.enrichment, Some(tor()));
        // The same user from the same exit: counted; another address: its own alert.
        assert!(d.on_event(&login(T0, "10.77.0.2", tor()), 0).is_empty());
        assert_eq!(d.on_event(&login(T0, "fd77::2", tor()), 0).len(), 1);
    }

    #[test]
    fn trusted_networks_and_plain_addresses_never_alert() {
        let mut d = detector();
        let trusted = EnrichmentInfo {
            trusted: true,
            reputation: Some(ReputationInfo {
                classification: Classification::Malicious,
                name: None,
                tags: vec![],
            }),
            lists: vec!["vpn".into()],
            ..tor()
        };
        assert!(d.on_event(&login(T0, "10.77.0.2", trusted), 0).is_empty());
        assert!(
            d.on_event(&login(T0, "10.77.0.2", EnrichmentInfo::default()), 0)
                .is_empty()
        );
        let mut d = detector_with("[rules.ssh_login_tor]\nenabled = false\n");
        assert!(d.on_event(&login(T0, "10.77.0.2", tor()), 0).is_empty());
    }
}
