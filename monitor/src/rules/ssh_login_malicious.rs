//! `ssh_login_malicious_ip`: an SSH login from an address the reputation file classifies as
//! `malicious`. Logins from `trusted_networks` never alert.
//!
//! Section `[rules.ssh_login_malicious_ip]`: only `enabled`, `severity` and `exceptions` (`exe`,
//! `argv_prefix`, `ancestor_exe`).

use super::{Finding, Rule, common_section, process_subject, untrusted_login, user_key};
use crate::{
    enrich::Context,
    matcher::RuleSettings,
    record::{Classification, EventType, RuleId},
};

#[derive(Clone, Debug, PartialEq)]
pub struct SshLoginMaliciousIp {
    pub settings: RuleSettings,
}

impl Rule for SshLoginMaliciousIp {
    fn id(&self) -> RuleId {
        RuleId::SshLoginMaliciousIp
    }

    fn judges(&self) -> &'static [EventType] {
        &[EventType::Login]
    }

    fn settings(&self) -> &RuleSettings {
        &self.settings
    }

    fn judge<'e>(&self, ctx: &Context<'e>) -> Option<Finding<'e>> {
        let (login, enrichment) = untrusted_login(ctx.event)?;
        let reputation = enrichment.reputation.as_ref()?;
        if reputation.classification != Classification::Malicious {
            return None;
        }
        let ip = login.remote.ip;
        Some(Finding {
            shell_match: None,
            web_server_via: None,
            title: format!("SSH Connection Established from Malicious IP {ip}"),
            dedup: format!("ssh_login_malicious_ip:{}:{ip}", user_key(login)),
            subject: process_subject(ctx.event),
        })
    }
}

common_section!(SshLoginMaliciousIp, port: false, destination: false);

#[cfg(test)]
mod tests {
    use crate::{
        record::{Classification, EnrichmentInfo, ReputationInfo, RuleId, Severity},
        testing::{T0, detector, login},
    };

    fn rated(classification: Classification) -> EnrichmentInfo {
        EnrichmentInfo {
            reputation: Some(ReputationInfo {
                classification,
                name: Some("Mirai".into()),
                tags: vec!["botnet".into()],
            }),
            ..EnrichmentInfo::default()
        }
    }

    #[test]
    fn only_a_malicious_verdict_alerts() {
        let mut d = detector();
        let alerts = d.on_event(&login(T0, "10.77.0.3", rated(Classification::Malicious)), 0);
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            (alerts[0].rule, alerts[0].severity),
            (RuleId::SshLoginMaliciousIp, Severity::High)
        );
        assert_eq!(
            alerts[0].title,
            "SSH Connection Established from Malicious IP 10.77.0.3"
        );
        assert_eq!(alerts[0].dedup, "ssh_login_malicious_ip:alice:10.77.0.3");
        for c in [
            Classification::Suspicious,
            Classification::Benign,
            Classification::Unknown,
        ] {
            assert!(
                d.on_event(&login(T0, "10.77.0.4", rated(c)), 0).is_empty(),
                "{c}"
            );
        }
    }
}
