//! `ssh_login_listed`: an SSH login from an address in one of the policy's named lists (VPN
//! ranges, `FireHOL` sets, Spamhaus DROP …). The title names the first list holding it, in the
//! policy's order; the alert's `enrichment.lists` has them all. Logins from `trusted_networks`
//! never alert.
//!
//! Section `[rules.ssh_login_listed]`: only `enabled`, `severity` and `exceptions` (`exe`,
//! `argv_prefix`, `ancestor_exe`).

use super::{Finding, Rule, common_section, process_subject, untrusted_login, user_key};
use crate::{
    enrich::Context,
    matcher::RuleSettings,
    record::{EventType, RuleId},
};

#[derive(Clone, Debug, PartialEq)]
pub struct SshLoginListed {
    pub settings: RuleSettings,
}

impl Rule for SshLoginListed {
    fn id(&self) -> RuleId {
        RuleId::SshLoginListed
    }

    fn judges(&self) -> &'static [EventType] {
        &[EventType::Login]
    }

    fn settings(&self) -> &RuleSettings {
        &self.settings
    }

    fn judge<'e>(&self, ctx: &Context<'e>) -> Option<Finding<'e>> {
        let (login, enrichment) = untrusted_login(ctx.event)?;
        let list = enrichment.lists.first()?;
        let ip = login.remote.ip;
        Some(Finding {
            shell_match: None,
            web_server_via: None,
            title: format!("SSH Connection Established from {list} Address {ip}"),
            dedup: format!("ssh_login_listed:{list}:{}:{ip}", user_key(login)),
            subject: process_subject(ctx.event),
        })
    }
}

common_section!(SshLoginListed, port: false, destination: false);

#[cfg(test)]
mod tests {
    use crate::{
        record::{EnrichmentInfo, RuleId, Severity},
        testing::{T0, detector, login},
    };

    #[test]
    fn the_first_list_names_the_alert() {
        let mut d = detector();
        let listed = EnrichmentInfo {
            lists: vec!["vpn".into(), "firehol_level1".into()],
            ..EnrichmentInfo::default()
        };
        let alerts = d.on_event(&login(T0, "10.77.0.5", listed), 0);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(
            (a.rule, a.severity),
            (RuleId::SshLoginListed, Severity::High)
        );
        assert_eq!(
            a.title,
            "SSH Connection Established from vpn Address 10.77.0.5"
        );
        assert_eq!(a.dedup, "ssh_login_listed:vpn:alice:10.77.0.5");
        assert!(
            d.on_event(&login(T0, "10.77.0.6", EnrichmentInfo::default()), 0)
                .is_empty()
        );
    }
}
