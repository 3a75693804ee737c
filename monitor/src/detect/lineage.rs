//! Who is a web server and what is a shell, judged on executable paths (the kernel's exec record
//! or `/proc/<pid>/exe`), never on comm: `prctl(PR_SET_NAME)` renames comm at will.

use crate::{
    policy::{ExeGlob, Policy, basename},
    record::{EventRecord, ProcessInfo},
};

/// The web server an event's process is, or descends from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebServer<'a> {
    pub pid: u32,
    pub exe: &'a str,
    /// 0: the process itself; 1: its parent; 2: its grandparent; …
    pub depth: usize,
}

impl WebServer<'_> {
    /// `php-fpm8.2` for `/usr/sbin/php-fpm8.2`.
    pub fn name(&self) -> &str {
        basename(self.exe)
    }
}

fn matches_any(list: &[ExeGlob], exe: &str) -> bool {
    list.iter().any(|g| g.matches(exe))
}

/// The nearest web server among the process itself (when `include_self`) and its ancestors, at
/// any depth the record carries. `ancestry` is parent first, so the first match is the nearest.
pub fn web_server<'a>(
    policy: &Policy,
    event: &'a EventRecord,
    include_self: bool,
) -> Option<WebServer<'a>> {
    let own = include_self
        .then_some(
            event
                .process
                .exe
                .as_deref()
                .map(|exe| (event.process.pid, exe, 0)),
        )
        .flatten();
    let ancestors = event
        .ancestry
        .iter()
        .enumerate()
        .filter_map(|(i, a)| a.exe.as_deref().map(|exe| (a.pid, exe, i + 1)));
    own.into_iter()
        .chain(ancestors)
        .find(|(_, exe, _)| matches_any(&policy.web_servers, exe))
        .map(|(pid, exe, depth)| WebServer { pid, exe, depth })
}

/// A shell that an exec started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shell<'a> {
    /// The executable (the exec's `filename` when the exe path is unknown).
    pub exe: &'a str,
    /// busybox: the applet it runs as (`sh`); `None` for a standalone shell binary.
    pub applet: Option<&'a str>,
}

/// Whether the process is a shell: its executable's basename is in the shells list, or it is
/// busybox running a shell applet (`argv[0]` = `sh`, or `busybox sh ...`).
pub fn shell<'a>(
    policy: &Policy,
    process: &'a ProcessInfo,
    filename: Option<&'a str>,
) -> Option<Shell<'a>> {
    let exe = process.exe.as_deref().or(filename)?;
    if matches_any(&policy.shells, exe) {
        return Some(Shell { exe, applet: None });
    }
    if basename(exe) != "busybox" {
        return None;
    }
    // busybox picks the applet from argv[0]'s basename, or from argv[1] when argv[0] is busybox
    // itself. Only busybox gets this: for any other binary argv[0] is just a claim.
    let first = basename(process.argv.first()?);
    let applet = if first == "busybox" {
        process.argv.get(1).map(|a| basename(a))?
    } else {
        first
    };
    // Shell globs name basenames, so match the applet as if it were one.
    policy
        .shells
        .iter()
        .any(|g| !g.as_str().contains('/') && g.matches(applet))
        .then_some(Shell {
            exe,
            applet: Some(applet),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Ancestor, EventType};

    fn ancestor(pid: u32, exe: &str, comm: &str) -> Ancestor {
        Ancestor {
            pid,
            exe: Some(exe.to_owned()),
            comm: comm.to_owned(),
            argv: vec![comm.to_owned()],
        }
    }

    fn event(exe: &str, comm: &str, ancestry: Vec<Ancestor>) -> EventRecord {
        EventRecord {
            record_type: "event".to_owned(),
            event: EventType::Exec,
            time: "2026-11-23T05:00:00Z".to_owned(),
            host: "web1".to_owned(),
            process: ProcessInfo {
                pid: 4242,
                ppid: ancestry.first().map_or(1, |a| a.pid),
                comm: comm.to_owned(),
                exe: Some(exe.to_owned()),
                argv: vec![comm.to_owned()],
                ..ProcessInfo::default()
            },
            filename: None,
            exit_code: None,
            socket: None,
            ancestry,
            pre_existing: false,
        }
    }

    #[test]
    fn web_server_found_at_every_depth() {
        let p = Policy::embedded_default();
        let fpm = ancestor(900, "/usr/sbin/php-fpm8.2", "php-fpm8.2");
        let init = ancestor(1, "/usr/lib/systemd/systemd", "systemd");
        let sh = ancestor(950, "/usr/bin/dash", "sh");
        let py = ancestor(960, "/usr/bin/python3.11", "python3");
        // parent, grandparent, great-grandparent, great-great-grandparent.
        let chains = [
            vec![fpm.clone(), init.clone()],
            vec![sh.clone(), fpm.clone(), init.clone()],
            vec![py.clone(), sh.clone(), fpm.clone(), init.clone()],
            vec![
                sh.clone(),
                py.clone(),
                sh.clone(),
                fpm.clone(),
                init.clone(),
            ],
        ];
        for (i, chain) in chains.into_iter().enumerate() {
            let ev = event("/usr/bin/nc.openbsd", "nc", chain);
            let ws =
                web_server(&p, &ev, true).unwrap_or_else(|| panic!("chain {i}: php-fpm not found"));
            assert_eq!(
                (ws.pid, ws.exe, ws.depth),
                (900, "/usr/sbin/php-fpm8.2", i + 1)
            );
            assert_eq!(ws.name(), "php-fpm8.2");
        }
    }

    #[test]
    fn nearest_web_server_and_self() {
        let p = Policy::embedded_default();
        let ev = event(
            "/usr/sbin/php-fpm8.2",
            "php-fpm8.2",
            vec![
                ancestor(800, "/usr/sbin/nginx", "nginx"),
                ancestor(1, "/sbin/init", "init"),
            ],
        );
        assert_eq!(web_server(&p, &ev, true).map(|w| w.depth), Some(0));
        assert_eq!(
            web_server(&p, &ev, false).map(|w| (w.exe, w.depth)),
            Some(("/usr/sbin/nginx", 1))
        );
    }

    #[test]
    fn comm_never_makes_a_web_server() {
        let p = Policy::embedded_default();
        // A python process that renamed itself "nginx", with an ancestor renamed the same way.
        let ev = event(
            "/usr/bin/python3.11",
            "nginx",
            vec![
                ancestor(700, "/usr/bin/python3.11", "nginx"),
                ancestor(1, "/sbin/init", "init"),
            ],
        );
        assert_eq!(web_server(&p, &ev, true), None);
        // An ancestor whose exe is unknown is not a web server, whatever its comm.
        let mut unknown = ancestor(700, "", "nginx");
        unknown.exe = None;
        let ev = event("/usr/bin/dash", "sh", vec![unknown]);
        assert_eq!(web_server(&p, &ev, true), None);
    }

    #[test]
    fn shells_by_exe_and_busybox_applet() {
        let p = Policy::embedded_default();
        let proc_of = |exe: &str, argv: &[&str]| ProcessInfo {
            exe: Some(exe.to_owned()),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..ProcessInfo::default()
        };
        for exe in [
            "/usr/bin/dash",
            "/bin/bash",
            "/usr/bin/zsh",
            "/bin/sh",
            "/usr/bin/fish",
            "/bin/tcsh",
        ] {
            assert!(shell(&p, &proc_of(exe, &["x"]), None).is_some(), "{exe}");
        }
        for exe in [
            "/usr/bin/python3",
            "/usr/bin/bashbug",
            "/usr/bin/shred",
            "/usr/bin/ssh",
        ] {
            assert_eq!(
                shell(&p, &proc_of(exe, &["sh"]), None),
                None,
                "{exe} with argv[0] sh is not a shell"
            );
        }
        let bb = proc_of("/usr/bin/busybox", &["sh", "-c", "id"]);
        assert_eq!(shell(&p, &bb, None).and_then(|s| s.applet), Some("sh"));
        let bb = proc_of("/bin/busybox", &["/bin/ash"]);
        assert_eq!(shell(&p, &bb, None).and_then(|s| s.applet), Some("ash"));
        let bb = proc_of("/bin/busybox", &["busybox", "sh", "-c", "id"]);
        assert_eq!(shell(&p, &bb, None).and_then(|s| s.applet), Some("sh"));
        let bb = proc_of("/bin/busybox", &["wget", "http://x"]);
        assert_eq!(shell(&p, &bb, None), None);
        let unknown = ProcessInfo::default();
        assert_eq!(
            shell(&p, &unknown, Some("/bin/sh")).map(|s| s.exe),
            Some("/bin/sh"),
            "filename fallback"
        );
    }
}
