//! `webserver_egress`: a web server, or any process descending from one (at any depth, or
//! running in place of one after an exec), opens a TCP connection to a port outside the allowed
//! egress ports and an address outside the excluded networks. A web shell connects out from a
//! child (php-fpm → sh → nc), so the whole lineage counts.

use std::net::SocketAddr;

use super::{Finding, RuleId, exe_key, lineage};
use crate::{
    netrange,
    policy::{Policy, Subject},
    record::{EventRecord, EventType},
};

pub fn judge(policy: &Policy, event: &EventRecord) -> Option<Finding> {
    let rule = &policy.webserver_egress;
    if !rule.settings.enabled || event.event != EventType::Connect {
        return None;
    }
    let remote = event.socket.as_ref()?.remote?;
    // An IPv6 socket reaching ::ffff:a.b.c.d talks to a.b.c.d: judge that.
    let ip = netrange::canonical(remote.ip);
    let port = remote.port;
    // Every connect on the host passes here: the cheap destination checks first, lineage (glob
    // matching over the process, its web server and its ancestry) only for what is left.
    if rule.allowed_ports.iter().any(|r| r.contains(port)) {
        return None;
    }
    if rule.excluded_networks.iter().any(|net| net.contains(ip)) {
        return None;
    }
    let web_server = lineage::web_server(policy, event, true)?;
    let exe = event.process.exe.as_deref();
    let subject = Subject {
        exe,
        argv: &event.process.argv,
        ancestry: &event.ancestry,
        destination: Some(ip),
        port: Some(port),
    };
    if rule.settings.exceptions.iter().any(|e| e.matches(&subject)) {
        return None;
    }
    let destination = SocketAddr::new(ip, port);
    let title = if web_server.depth == 0 && !web_server.replaced {
        format!("Web server egress: {} -> {destination}", exe_key(exe))
    } else if web_server.depth == 0 {
        format!(
            "Web server egress: {} -> {destination} (in place of {})",
            exe_key(exe),
            web_server.name()
        )
    } else {
        format!(
            "Web server egress: {} -> {destination} (descendant of {})",
            exe_key(exe),
            web_server.name()
        )
    };
    Some(Finding {
        rule: RuleId::WebserverEgress,
        title,
        dedup: format!(
            "webserver_egress:{}:{}:{ip}:{port}",
            web_server.exe,
            exe_key(exe)
        ),
    })
}
