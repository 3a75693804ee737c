//! The text format: one line per record for a person at a terminal (the default when stdout is
//! one): the time, the severity (or `status`, `event`), what happened, the process and the
//! remote address. Coloured with ANSI escapes when asked to (a terminal, `NO_COLOR` unset).
//!
//! Everything printed that a process chose (argv, comm, paths, titles quoting them) has its
//! control and bidirectional-formatting characters escaped, so a command line can neither break
//! the one-line-per-record promise nor send escape sequences to the reader's terminal.

use std::{
    fmt::{Display, Write as _},
    net::SocketAddr,
};

use anstyle::{AnsiColor, Color, Style};

use super::{
    Encode, OutputError,
    fields::{self, Subject},
};
use crate::record::{
    AlertRecord, EventRecord, EventType, Record, ReloadInfo, Severity, StatusRecord,
};

/// Text lines; `colour` adds ANSI colours.
#[derive(Clone, Copy, Debug, Default)]
pub struct Text {
    pub colour: bool,
}

impl Encode for Text {
    fn encode(&self, record: &Record, line: &mut Vec<u8>) -> Result<(), OutputError> {
        let mut out = String::with_capacity(256);
        match record {
            Record::Alert(a) => self.alert(a, &mut out),
            Record::Event(e) => self.event(e, &mut out),
            Record::Status(s) => self.status(s, &mut out),
        }
        line.extend_from_slice(out.as_bytes());
        Ok(())
    }
}

const fn fg(c: AnsiColor) -> Style {
    Style::new().fg_color(Some(Color::Ansi(c)))
}

fn severity_style(s: Severity) -> Style {
    match s {
        Severity::Critical => fg(AnsiColor::BrightWhite)
            .bg_color(Some(Color::Ansi(AnsiColor::Red)))
            .bold(),
        Severity::High => fg(AnsiColor::Red).bold(),
        Severity::Medium => fg(AnsiColor::Yellow).bold(),
        Severity::Low => fg(AnsiColor::Cyan),
        Severity::Info => fg(AnsiColor::Blue),
    }
}

fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "CRITICAL",
        Severity::High => "HIGH",
        Severity::Medium => "MEDIUM",
        Severity::Low => "LOW",
        Severity::Info => "INFO",
    }
}

impl Text {
    /// `text` in `style` (padded to `width`), or plain without colours.
    fn styled(self, out: &mut String, style: Style, text: &str, width: usize) {
        if self.colour {
            let _ = write!(out, "{style}{text:<width$}{style:#}");
        } else {
            let _ = write!(out, "{text:<width$}");
        }
    }

    fn head(self, out: &mut String, time: &str, style: Style, label: &str) {
        self.styled(out, Style::new().dimmed(), time, 0);
        out.push(' ');
        self.styled(out, style, label, 8);
    }

    fn alert(self, a: &AlertRecord, out: &mut String) {
        self.head(
            out,
            &a.time,
            severity_style(a.severity),
            severity_name(a.severity),
        );
        out.push(' ');
        self.styled(out, Style::new().bold(), a.rule.as_str(), 0);
        out.push_str(": ");
        push_clean(out, &a.title);
        subject(out, &Subject::from(a));
    }

    fn event(self, e: &EventRecord, out: &mut String) {
        self.head(out, &e.time, Style::new().dimmed(), "event");
        out.push(' ');
        out.push_str(e.event.as_str());
        let s = Subject::from(e);
        let flow = s.flow();
        let what = match e.event {
            EventType::Exec => fields::command_line(&e.process.argv),
            EventType::Exit => e
                .exit_code
                .map(|c| format!("exit code {}", fields::exit_code(c))),
            EventType::Login => e.login.as_ref().map(|l| match &l.user {
                Some(user) => format!("{user} over SSH"),
                None => format!("uid {} over SSH", l.uid),
            }),
            EventType::Listen | EventType::Connect | EventType::Accept => None,
        };
        if let Some(what) = what {
            out.push_str(": ");
            push_clean(out, &what);
        }
        if let (Some(src), Some(dst)) = (flow.source, flow.destination) {
            let _ = write!(
                out,
                " {} -> {}",
                SocketAddr::new(src.ip, src.port),
                SocketAddr::new(dst.ip, dst.port)
            );
        }
        subject(out, &s);
    }

    fn status(self, s: &StatusRecord, out: &mut String) {
        self.head(out, &s.time, fg(AnsiColor::Green), "status");
        let attached = s.hooks.values().filter(|h| h.attached.is_some()).count();
        let e = &s.events;
        let events = e.listen
            + e.connect
            + e.accept
            + e.exec
            + e.fork
            + e.exit
            + e.cred
            + e.setsid
            + e.pam
            + e.login;
        let _ = write!(
            out,
            " {}: monitor {}, {attached}/{} hooks attached, {events} events, {} drops, {} alerts, policy ",
            as_name(s.status),
            s.version,
            s.hooks.len(),
            s.drops,
            s.alerts,
        );
        push_clean(out, &s.policy);
        for list in &s.lists {
            out.push_str(", ");
            push_clean(out, &list.source);
            let _ = write!(out, " {} entries ({})", list.entries, list.last);
            if let Some(error) = &list.error {
                out.push_str(": ");
                push_clean(out, error);
            }
        }
        let dropped = s.output.dropped.total();
        if dropped > 0 {
            let _ = write!(out, ", {dropped} records dropped by the output");
        }
        match &s.reload {
            Some(ReloadInfo {
                error: Some(error), ..
            }) => {
                out.push_str(", reload refused: ");
                push_clean(out, &error.message);
            }
            Some(reload) if !reload.changed.is_empty() => {
                out.push_str(", reloaded: ");
                push_clean(out, &reload.changed.join(", "));
            }
            _ => {}
        }
    }
}

/// `  process comm[pid] exe (user)  remote ip:port`.
fn subject(out: &mut String, s: &Subject<'_>) {
    let p = s.process;
    out.push_str("  process ");
    push_clean(out, &p.comm);
    let _ = write!(out, "[{}]", p.pid);
    if let Some(exe) = &p.exe {
        out.push(' ');
        push_clean(out, exe);
    }
    match &p.user {
        Some(user) => {
            out.push_str(" (");
            push_clean(out, user);
        }
        None => {
            let _ = write!(out, " (uid {}", p.uid);
        }
    }
    // A setuid program: whose privileges it has.
    match p.euid {
        Some(euid) if euid != p.uid => {
            let _ = write!(out, " euid {euid})");
        }
        _ => out.push(')'),
    }
    let flow = s.flow();
    if let Some(remote) = flow.remote {
        let _ = write!(out, "  remote {}", SocketAddr::new(remote.ip, remote.port));
    } else if s.kind == EventType::Listen
        && let Some(local) = flow.destination
    {
        let _ = write!(out, "  local {}", SocketAddr::new(local.ip, local.port));
    }
}

fn as_name(v: impl serde::Serialize) -> impl Display {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Appends `s` with control characters and bidirectional overrides escaped (`\n`, `\u{1b}`).
fn push_clean(out: &mut String, s: &str) {
    for c in s.chars() {
        let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::{
        record::{
            DedupStatus, EventCounts, HookStatus, OutputStatus, ReloadError, ReloadInfo, RuleId,
            Status, TableStats, Verdict,
        },
        testing,
    };

    fn line(text: Text, record: &Record) -> String {
        let mut out = Vec::new();
        text.encode(record, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn shell_alert() -> AlertRecord {
        let mut process =
            testing::process(4100, "/usr/bin/dash", "sh", &["sh", "-c", "id\n\u{1b}[2J"]);
        process.user = Some("www-data".to_owned());
        let ev = testing::connect(
            testing::T0,
            process,
            vec![testing::fpm_worker()],
            "198.51.100.9",
            4444,
        );
        let verdict = Verdict {
            rule: RuleId::WebserverShell,
            severity: Severity::High,
            title: "php-fpm8.2 ran sh -c id\n\u{1b}[2J".to_owned(),
            dedup: "x".to_owned(),
            shell_match: None,
            web_server_via: None,
        };
        AlertRecord::new(&ev, verdict, 0, 0)
    }

    #[test]
    fn an_alert_is_one_line_with_severity_title_process_and_remote() {
        let text = line(Text { colour: false }, &Record::Alert(shell_alert()));
        assert_eq!(
            text,
            "2026-11-23T05:00:00.000000001Z HIGH     webserver_shell: php-fpm8.2 ran sh -c id\\n\\u{1b}[2J  \
             process sh[4100] /usr/bin/dash (www-data)  remote 198.51.100.9:4444"
        );
    }

    #[test]
    fn a_setuid_program_shows_its_effective_uid() {
        let mut process = testing::python();
        process.euid = Some(0);
        let listen = testing::listen(testing::T0, process.clone(), "0.0.0.0", 8080);
        assert!(
            line(Text::default(), &Record::Event(listen))
                .contains("process python3[4000] /usr/bin/python3.11 (app euid 0)  local"),
        );
        process.user = None;
        let listen = testing::listen(testing::T0, process, "0.0.0.0", 8080);
        assert!(line(Text::default(), &Record::Event(listen)).contains("(uid 1000 euid 0)"));
    }

    #[test]
    fn colours_only_when_asked_and_never_from_the_record() {
        let plain = line(Text { colour: false }, &Record::Alert(shell_alert()));
        assert!(!plain.contains('\u{1b}'), "{plain:?}");
        let coloured = line(Text { colour: true }, &Record::Alert(shell_alert()));
        // The severity is red and bold; the escape in the title stays escaped.
        assert!(
            coloured.contains("\u{1b}[1m\u{1b}[31mHIGH    \u{1b}[0m"),
            "{coloured:?}"
        );
        assert!(coloured.contains("\\u{1b}[2J"), "{coloured:?}");
        assert!(!coloured.contains('\n'));
    }

    #[test]
    fn events_and_status_lines() {
        let listen = testing::listen(testing::T0, testing::python(), "::", 8080);
        assert_eq!(
            line(Text::default(), &Record::Event(listen)),
            "2026-11-23T05:00:00.000000001Z event    listen  process python3[4000] /usr/bin/python3.11 (app)  local [::]:8080"
        );
        let exec = testing::event(EventType::Exec, testing::T0, testing::python(), vec![]);
        assert!(
            line(Text::default(), &Record::Event(exec))
                .contains("exec: python3 -m http.server 4444  process")
        );
        let status = StatusRecord {
            status: Status::Started,
            time: testing::T0.to_owned(),
            host: "web1".to_owned(),
            version: "0.1.0",
            hooks: BTreeMap::from([
                (
                    "listen".to_owned(),
                    HookStatus {
                        attached: Some("tp".to_owned()),
                        refused: vec![],
                    },
                ),
                ("pam".to_owned(), HookStatus::default()),
            ]),
            ring_buffer_bytes: 4096,
            policy: "embedded default".to_owned(),
            events: EventCounts {
                exec: 2,
                connect: 1,
                ..EventCounts::default()
            },
            drops: 0,
            errors: BTreeMap::new(),
            process_table: TableStats {
                size: 1,
                capacity: 2,
                evicted: 0,
            },
            alerts: 4,
            alerts_by_rule: BTreeMap::from([("unexpected_listen", 4)]),
            dedup: DedupStatus::default(),
            ssh_sessions: 0,
            list_reloads: 0,
            policy_reloads: 0,
            policy_reloads_refused: 0,
            reload: None,
            rss_bytes: 1 << 24,
            output: OutputStatus::default(),
            lists: vec![],
            watched_prefixes: 0,
            watched_prefixes_overflow: false,
            pre_existing_listeners: None,
            programs: None,
        };
        assert_eq!(
            line(Text::default(), &Record::Status(status.clone())),
            "2026-11-23T05:00:00.000000001Z status   started: monitor 0.1.0, 1/2 hooks attached, 3 events, 0 drops, 4 alerts, policy embedded default"
        );
        // What a person must not miss: records the output dropped, a refused reload.
        let mut reloaded = status;
        reloaded.status = Status::Reloaded;
        reloaded.output.dropped.connect = 7;
        reloaded.reload = Some(ReloadInfo {
            trigger: "sighup",
            accepted: false,
            changed: vec![],
            error: Some(ReloadError {
                file: "p.toml".to_owned(),
                line: Some(3),
                column: Some(1),
                key: Some("dedup_window".to_owned()),
                message: "p.toml:3:1: dedup_window: `x` is not a duration".to_owned(),
            }),
        });
        assert_eq!(
            line(Text::default(), &Record::Status(reloaded.clone())),
            "2026-11-23T05:00:00.000000001Z status   reloaded: monitor 0.1.0, 1/2 hooks attached, 3 events, 0 drops, 4 alerts, policy embedded default, 7 records dropped by the output, reload refused: p.toml:3:1: dedup_window: `x` is not a duration"
        );
        reloaded.reload = Some(ReloadInfo {
            trigger: "sighup",
            accepted: true,
            changed: vec![
                "dedup_window".to_owned(),
                "rules.unexpected_listen".to_owned(),
            ],
            error: None,
        });
        reloaded.output.dropped.connect = 0;
        assert!(
            line(Text::default(), &Record::Status(reloaded)).ends_with(
                "policy embedded default, reloaded: dedup_window, rules.unexpected_listen"
            )
        );
    }
}
