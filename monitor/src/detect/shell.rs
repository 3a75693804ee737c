//! `webserver_shell`: an exec of a shell under a web server: a descendant of one at any depth,
//! or a web server that replaced itself with the shell (`execv("/bin/sh")`). php-fpm's
//! `system()` runs `sh -c -- <cmd>`; the alert carries that argv as executed.

use super::{Finding, RuleId, lineage};
use crate::{
    policy::{Policy, Subject},
    record::{EventRecord, EventType},
};

pub fn judge(policy: &Policy, event: &EventRecord) -> Option<Finding> {
    let rule = &policy.webserver_shell;
    if !rule.settings.enabled || event.event != EventType::Exec {
        return None;
    }
    let shell = lineage::shell(policy, &event.process, event.filename.as_deref())?;
    // Not the current program (at exec time the process already is the shell), but a program it
    // replaced, or an ancestor.
    let web_server = lineage::web_server(policy, event, false)?;
    let subject = Subject {
        exe: Some(shell.exe),
        argv: &event.process.argv,
        ancestry: &event.ancestry,
        destination: None,
        port: None,
    };
    if rule.settings.exceptions.iter().any(|e| e.matches(&subject)) {
        return None;
    }
    let shell_name = match shell.applet {
        Some(applet) => format!("{} ({applet})", shell.exe),
        None => shell.exe.to_owned(),
    };
    let relation = match web_server.depth {
        0 => "in place of",
        1 => "parent",
        _ => "ancestor",
    };
    Some(Finding {
        rule: RuleId::WebserverShell,
        title: format!(
            "Shell spawned by web server: {shell_name} ({relation} {})",
            web_server.name()
        ),
        dedup: format!("webserver_shell:{}:{}", web_server.exe, shell.exe),
    })
}
