//! Whose lineage an event is under: the nearest web server of a record (the process itself, a
//! program it replaced by exec, the `web_server` the process table tracked, or its `ancestry`),
//! and whether the process is a shell. Judged on executable paths (the kernel's exec record or
//! `/proc/<pid>/exe`), never on comm: `prctl(PR_SET_NAME)` renames comm at will.
//!
//! Both read the record only, so a replay decides exactly as the live daemon did (and, under
//! another policy, by that policy's lists).

use crate::{
    matcher::{ExeGlob, basename, matches_any, program_path},
    record::{EventRecord, ProcessInfo},
};

/// The web server an event's process is, or descends from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebServer<'a> {
    pub pid: u32,
    /// The path that matched the policy: the executable, or the exec's filename for a script
    /// server whose executable is the interpreter (`/usr/bin/gunicorn` run by python).
    pub exe: &'a str,
    /// 0: the process itself (or a program it replaced by exec); 1: its parent; 2: its
    /// grandparent; …
    pub depth: usize,
    /// Depth 0 by a program the process replaced by exec, not the one it runs now.
    pub replaced: bool,
}

impl WebServer<'_> {
    /// `php-fpm8.2` for `/usr/sbin/php-fpm8.2`.
    pub fn name(&self) -> &str {
        basename(self.exe)
    }
}

/// The nearest web server among the process itself (when `include_self`), the record's
/// `web_server` (which the daemon tracks at any depth, through exits, reparenting and exec) and
/// its `ancestry` (parent first; all older recordings have). Each is judged against `list` (the
/// policy's `web_servers`) as it is now, so a replay under another policy decides by its own.
///
/// `web_server` may be the process's own previous program (depth 0, php-fpm that exec'd a shell
/// in place): that counts even without `include_self`, which only leaves out the program the
/// process runs now.
pub fn web_server<'a>(
    list: &[ExeGlob],
    event: &'a EventRecord,
    include_self: bool,
) -> Option<WebServer<'a>> {
    let process = &event.process;
    let own = include_self
        .then(|| program_path(list, process.exe.as_deref(), event.filename.as_deref()))
        .flatten()
        .map(|exe| WebServer {
            pid: process.pid,
            exe,
            depth: 0,
            replaced: false,
        });
    if own.is_some() {
        return own;
    }
    let tracked = event.web_server.as_ref().and_then(|ws| {
        let mut replaced = false;
        let depth = if ws.pid == process.pid {
            // The daemon records the current program itself when it is a web server (same exe
            // and argv; an exec record also names the filename); only a previous program counts
            // when self is left out.
            let current = ws.exe == process.exe
                && ws.argv == process.argv
                && (event.filename.is_none() || ws.filename == event.filename);
            if current && !include_self {
                return None;
            }
            replaced = !current;
            0
        } else {
            // Beyond the recorded ancestry when it is not listed there.
            event
                .ancestry
                .iter()
                .position(|a| a.pid == ws.pid)
                .map_or(event.ancestry.len() + 1, |i| i + 1)
        };
        let exe = program_path(list, ws.exe.as_deref(), ws.filename.as_deref())?;
        Some(WebServer {
            pid: ws.pid,
            exe,
            depth,
            replaced,
        })
    });
    let listed = event.ancestry.iter().enumerate().find_map(|(i, a)| {
        let exe = a.exe.as_deref().filter(|exe| matches_any(list, exe))?;
        Some(WebServer {
            pid: a.pid,
            exe,
            depth: i + 1,
            replaced: false,
        })
    });
    match (tracked, listed) {
        (Some(t), Some(l)) if l.depth < t.depth => Some(l),
        (Some(t), _) => Some(t),
        (None, l) => l,
    }
}

/// A shell that an exec started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shell<'a> {
    /// The executable (the exec's `filename` when the exe path is unknown).
    pub exe: &'a str,
    /// busybox: the applet it runs as (`sh`); `None` for a standalone shell binary.
    pub applet: Option<&'a str>,
}

/// Whether the process is a shell: its executable's basename is in the shells list, or it is
/// busybox running a shell applet (`argv[0]` = `sh`, or `busybox sh ...`).
pub fn shell<'a>(
    shells: &[ExeGlob],
    process: &'a ProcessInfo,
    filename: Option<&'a str>,
) -> Option<Shell<'a>> {
    let exe = process.exe.as_deref().or(filename)?;
    if matches_any(shells, exe) {
        return Some(Shell { exe, applet: None });
    }
    if basename(exe) != "busybox" {
        return None;
    }
    // busybox picks the applet from argv[0]'s basename, or from argv[1] when argv[0] is busybox
    // itself. Only busybox gets this: for any other binary argv[0] is just a claim.
    let first = basename(process.argv.first()?);
    // A login shell's argv[0] starts with '-' ("-sh"); busybox strips it to pick the applet.
    let first = first.strip_prefix('-').unwrap_or(first);
    let applet = if first == "busybox" {
        process.argv.get(1).map(|a| basename(a))?
    } else {
        first
    };
    // Shell globs name basenames, so match the applet as if it were one.
    shells
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
    use crate::{
        policy::Policy,
        record::{Ancestor, EventType},
        testing,
    };

    fn ancestor(pid: u32, exe: &str, comm: &str) -> Ancestor {
        testing::ancestor(pid, exe, comm, &[comm])
    }

    fn event(exe: &str, comm: &str, ancestry: Vec<Ancestor>) -> EventRecord {
        let process = testing::process(4242, exe, comm, &[comm]);
        testing::event(EventType::Exec, testing::T0, process, ancestry)
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
            let ws = web_server(&p.web_servers, &ev, true)
                .unwrap_or_else(|| panic!("chain {i}: php-fpm not found"));
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
        assert_eq!(
            web_server(&p.web_servers, &ev, true).map(|w| w.depth),
            Some(0)
        );
        assert_eq!(
            web_server(&p.web_servers, &ev, false).map(|w| (w.exe, w.depth)),
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
        assert_eq!(web_server(&p.web_servers, &ev, true), None);
        // An ancestor whose exe is unknown is not a web server, whatever its comm.
        let mut unknown = ancestor(700, "", "nginx");
        unknown.exe = None;
        let ev = event("/usr/bin/dash", "sh", vec![unknown]);
        assert_eq!(web_server(&p.web_servers, &ev, true), None);
    }

    #[test]
    fn shells_by_exe_and_busybox_applet() {
        let p = Policy::embedded_default();
        let proc_of = |exe: &str, argv: &[&str]| ProcessInfo {
            exe: Some(exe.to_owned()),
            argv: argv.iter().map(std::string::ToString::to_string).collect(),
            ..ProcessInfo::default()
        };
        for exe in [
            "/usr/bin/dash",
            "/bin/bash",
            "/usr/bin/zsh",
            "/bin/sh",
            "/usr/bin/fish",
            "/bin/tcsh",
            // Debian installs these under other names behind /etc/alternatives, and exe is the
            // resolved path.
            "/usr/bin/ksh93",
            "/usr/bin/rksh93",
            "/usr/bin/bsd-csh",
            "/usr/bin/mksh-static",
            "/usr/bin/lksh",
        ] {
            assert!(
                shell(&p.shells, &proc_of(exe, &["x"]), None).is_some(),
                "{exe}"
            );
        }
        for exe in [
            "/usr/bin/python3",
            "/usr/bin/bashbug",
            "/usr/bin/shred",
            "/usr/bin/ssh",
        ] {
            assert_eq!(
                shell(&p.shells, &proc_of(exe, &["sh"]), None),
                None,
                "{exe} with argv[0] sh is not a shell"
            );
        }
        let bb = proc_of("/usr/bin/busybox", &["sh", "-c", "id"]);
        assert_eq!(
            shell(&p.shells, &bb, None).and_then(|s| s.applet),
            Some("sh")
        );
        // The login form: busybox strips the leading '-'.
        let bb = proc_of("/usr/bin/busybox", &["-sh", "-c", "id"]);
        assert_eq!(
            shell(&p.shells, &bb, None).and_then(|s| s.applet),
            Some("sh")
        );
        let bb = proc_of("/bin/busybox", &["/bin/ash"]);
        assert_eq!(
            shell(&p.shells, &bb, None).and_then(|s| s.applet),
            Some("ash")
        );
        let bb = proc_of("/bin/busybox", &["busybox", "sh", "-c", "id"]);
        assert_eq!(
            shell(&p.shells, &bb, None).and_then(|s| s.applet),
            Some("sh")
        );
        let bb = proc_of("/bin/busybox", &["wget", "http://x"]);
        assert_eq!(shell(&p.shells, &bb, None), None);
        let unknown = ProcessInfo::default();
        assert_eq!(
            shell(&p.shells, &unknown, Some("/bin/sh")).map(|s| s.exe),
            Some("/bin/sh"),
            "filename fallback"
        );
    }
}
