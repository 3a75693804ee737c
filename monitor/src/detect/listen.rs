//! `unexpected_listen`: a TCP socket starts listening on a port the policy does not allow. The
//! start-up baseline feeds sockets that were already listening through here too
//! (`pre_existing: true`), so they are judged by the same allow list.

use super::{Finding, RuleId, exe_key};
use crate::{
    netrange,
    policy::{Policy, Subject},
    record::{EventRecord, EventType},
};

pub fn judge(policy: &Policy, event: &EventRecord) -> Option<Finding> {
    let rule = &policy.unexpected_listen;
    if !rule.settings.enabled || event.event != EventType::Listen {
        return None;
    }
    let socket = event.socket.as_ref()?;
    let (ip, port) = (socket.local.ip, socket.local.port);
    if rule.allow_loopback && netrange::is_loopback(ip) {
        return None;
    }
    let exe = event.process.exe.as_deref();
    if rule.allow.iter().any(|entry| entry.matches(port, ip, exe)) {
        return None;
    }
    let subject = Subject {
        exe,
        argv: &event.process.argv,
        ancestry: &event.ancestry,
        destination: None,
        port: Some(port),
    };
    if rule.settings.exceptions.iter().any(|e| e.matches(&subject)) {
        return None;
    }
    Some(Finding {
        rule: RuleId::UnexpectedListen,
        title: format!("Unexpected Port Opened: {port}"),
        dedup: format!("unexpected_listen:{}:{port}", exe_key(exe)),
    })
}
