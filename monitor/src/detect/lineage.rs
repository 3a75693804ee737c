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

fn matches_any(list: &[ExeGlob], exe: &str) -> bool {
    list.iter().any(|g| g.matches(exe))
}

/// The path by which a program is a web server under `list`: its executable, else the path the
/// kernel executed (which a script server cannot change later, unlike comm or argv).
fn server_path<'a>(
    list: &[ExeGlob],
    exe: Option<&'a str>,
    filename: Option<&'a str>,
) -> Option<&'a str> {
    exe.into_iter()
        .chain(filename)
        .find(|path| matches_any(list, path))
}

/// Whether a program (executable path, exec filename when known) is a web server under
/// `policy`, for [`crate::process_table::ProcessTable::set_web_server_classifier`], which tracks
/// the nearest web server of every process with it. Owns a copy of the policy's patterns.
pub fn web_server_classifier(
    policy: &Policy,
) -> impl Fn(Option<&str>, Option<&str>) -> bool + Send + 'static {
    let list = policy.web_servers.clone();
    move |exe, filename| server_path(&list, exe, filename).is_some()
}

/// The nearest web server among the process itself (when `include_self`), the record's
/// `web_server` (which the daemon tracks at any depth, through exits, reparenting and exec) and
/// its `ancestry` (parent first; all older recordings have). Each is judged against `policy` as
/// it is now, so a replay under another policy decides by its own web server list.
///
/// `web_server` may be the process's own previous program (depth 0, php-fpm that exec'd a shell
/// in place): that counts even without `include_self`, which only leaves out the program the
/// process runs now.
pub fn web_server<'a>(
    policy: &Policy,
    event: &'a EventRecord,
    include_self: bool,
) -> Option<WebServer<'a>> {
    let list = &policy.web_servers;
    let process = &event.process;
    let own = include_self
        .then(|| server_path(list, process.exe.as_deref(), event.filename.as_deref()))
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
        let exe = server_path(list, ws.exe.as_deref(), ws.filename.as_deref())?;
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
    // A login shell's argv[0] starts with '-' ("-sh"); busybox strips it to pick the applet.
    let first = first.strip_prefix('-').unwrap_or(first);
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
            web_server: None,
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
            // Debian installs these under other names behind /etc/alternatives, and exe is the
            // resolved path.
            "/usr/bin/ksh93",
            "/usr/bin/rksh93",
            "/usr/bin/bsd-csh",
            "/usr/bin/mksh-static",
            "/usr/bin/lksh",
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
        // The login form: busybox strips the leading '-'.
        let bb = proc_of("/usr/bin/busybox", &["-sh", "-c", "id"]);
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
