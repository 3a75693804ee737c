//! Whose lineage an event is under: the nearest web server of a record (the process itself, a
//! program it replaced by exec, the `web_server` the process table tracked, or its `ancestry`),
//! and whether the process is a shell. Judged on executable paths (the kernel's exec record or
//! `/proc/<pid>/exe`), never on comm: `prctl(PR_SET_NAME)` renames comm at will.
//!
//! Both read the record only, so a replay decides exactly as the live daemon did (and, under
//! another policy, by that policy's lists).

use crate::{
    identity,
    matcher::{ExeGlob, basename, matches_any, program_path},
    record::{EventRecord, MatchKind, ProcessInfo, ToolInfo, ToolKind, WebServerVia},
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
    /// Lineage, or (with no web server in it) the process runs as a web server's user.
    pub via: WebServerVia,
}

impl WebServer<'_> {
    /// `php-fpm8.2` for `/usr/sbin/php-fpm8.2`; the user for one found by user.
    pub fn name(&self) -> &str {
        basename(self.exe)
    }

    /// The web server as titles say it: `parent php-fpm8.2`, `as www-data`.
    pub fn relation(&self) -> String {
        if self.via == WebServerVia::User {
            return format!("as {}", self.exe);
        }
        let relation = match self.depth {
            0 => "in place of",
            1 => "parent",
            _ => "ancestor",
        };
        format!("{relation} {}", self.name())
    }

    /// What dedup keys name it by: the executable, or `user:<name>`.
    pub fn key(&self) -> String {
        match self.via {
            WebServerVia::Lineage => self.exe.to_owned(),
            WebServerVia::User => format!("user:{}", self.exe),
        }
    }
}

/// With no web server in the lineage: the process runs as one of the web servers' users.
pub fn web_server_user<'a>(users: &[String], event: &'a EventRecord) -> Option<WebServer<'a>> {
    let user = event.process.user.as_deref()?;
    users.iter().any(|u| u == user).then_some(WebServer {
        pid: event.process.pid,
        exe: user,
        depth: 0,
        replaced: false,
        via: WebServerVia::User,
    })
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
        .then(|| {
            program_path(list, process.exe.as_deref(), event.filename.as_deref()).or_else(|| {
                // Recognised by file or content (an nginx copied to another name).
                event
                    .program
                    .as_ref()
                    .and_then(|p| p.web_server)
                    .and(process.exe.as_deref())
            })
        })
        .flatten()
        .map(|exe| WebServer {
            pid: process.pid,
            exe,
            depth: 0,
            replaced: false,
            via: WebServerVia::Lineage,
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
        let exe = program_path(list, ws.exe.as_deref(), ws.filename.as_deref())
            .or_else(|| ws.matched.and(ws.exe.as_deref()))?;
        Some(WebServer {
            pid: ws.pid,
            exe,
            depth,
            replaced,
            via: WebServerVia::Lineage,
        })
    });
    let listed = event.ancestry.iter().enumerate().find_map(|(i, a)| {
        let exe = a.exe.as_deref().filter(|exe| matches_any(list, exe))?;
        Some(WebServer {
            pid: a.pid,
            exe,
            depth: i + 1,
            replaced: false,
            via: WebServerVia::Lineage,
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
    /// The executable (the exec's `filename` when the exe path is unknown; the program a
    /// loader runs).
    pub exe: &'a str,
    /// busybox: the applet it runs as (`sh`); `None` for a standalone shell binary.
    pub applet: Option<&'a str>,
    /// How it was recognised.
    pub matched: MatchKind,
    /// The host's shell it is the same file or content as (inode and content matches).
    pub same_as: Option<&'a str>,
}

/// The program a loader exec runs, when the process is the loader: as recorded, else from argv.
fn loaded<'a>(loaders: &[ExeGlob], event: &'a EventRecord) -> Option<&'a str> {
    if let Some(l) = event.program.as_ref().and_then(|p| p.loaded.as_deref()) {
        return Some(l);
    }
    let exe = event.process.exe.as_deref()?;
    identity::is_loader(loaders, exe)
        .then(|| identity::loaded_program(&event.process.argv))
        .flatten()
}

/// Whether the event's process is a shell: by path (the shells globs, busybox applets), as the
/// program a loader runs, or by file and content (the record's `program`, judged live).
pub fn shell<'a>(
    shells: &[ExeGlob],
    loaders: &[ExeGlob],
    event: &'a EventRecord,
) -> Option<Shell<'a>> {
    if let Some(s) = shell_by_path(shells, &event.process, event.filename.as_deref()) {
        return Some(s);
    }
    let program = event.program.as_ref();
    if let Some(l) = loaded(loaders, event) {
        let by_path = matches_any(shells, l);
        if by_path || program.and_then(|p| p.shell) == Some(MatchKind::Loader) {
            return Some(Shell {
                exe: l,
                applet: None,
                matched: MatchKind::Loader,
                same_as: program.and_then(|p| p.same_as.as_deref()),
            });
        }
    }
    let matched = program?.shell?;
    Some(Shell {
        exe: event.process.exe.as_deref().or(event.filename.as_deref())?,
        applet: None,
        matched,
        same_as: program.and_then(|p| p.same_as.as_deref()),
    })
}

/// The shell or egress tool the connecting process is, or descends from below its web server
/// (`web_server_depth`: 0 for the process itself, else its ancestry index + 1).
pub fn tool(
    shells: &[ExeGlob],
    tools: &[ExeGlob],
    loaders: &[ExeGlob],
    event: &EventRecord,
    web_server_depth: Option<usize>,
) -> Option<ToolInfo> {
    let process = &event.process;
    let exe = process.exe.as_deref();
    if let Some(s) = shell(shells, loaders, event) {
        return Some(ToolInfo {
            pid: process.pid,
            exe: Some(s.exe.to_owned()),
            kind: ToolKind::Shell,
            matched: s.matched,
        });
    }
    let own = if exe.is_some_and(|e| matches_any(tools, e)) {
        Some((exe, MatchKind::Path))
    } else if let Some(l) = loaded(loaders, event).filter(|l| matches_any(tools, l)) {
        Some((Some(l), MatchKind::Loader))
    } else {
        event
            .program
            .as_ref()
            .and_then(|p| p.egress_tool)
            .map(|m| (exe, m))
    };
    if let Some((exe, matched)) = own {
        return Some(ToolInfo {
            pid: process.pid,
            exe: exe.map(str::to_owned),
            kind: ToolKind::Tool,
            matched,
        });
    }
    if let Some(t) = &event.egress_tool {
        return Some(t.clone());
    }
    // Recordings without `egress_tool`: the ancestry below the web server, by path.
    let below = web_server_depth.map_or(event.ancestry.len(), |d| d.saturating_sub(1));
    event.ancestry.iter().take(below).find_map(|a| {
        let exe = a.exe.as_deref()?;
        let kind = if matches_any(shells, exe) {
            ToolKind::Shell
        } else if matches_any(tools, exe) {
            ToolKind::Tool
        } else {
            return None;
        };
        Some(ToolInfo {
            pid: a.pid,
            exe: Some(exe.to_owned()),
            kind,
            matched: MatchKind::Path,
        })
    })
}

/// Whether the process is a shell by path: its executable's basename is in the shells list, or
/// it is busybox running a shell applet (`argv[0]` = `sh`, or `busybox sh ...`).
pub fn shell_by_path<'a>(
    shells: &[ExeGlob],
    process: &'a ProcessInfo,
    filename: Option<&'a str>,
) -> Option<Shell<'a>> {
    let exe = process.exe.as_deref().or(filename)?;
    if matches_any(shells, exe) {
        return Some(Shell {
            exe,
            applet: None,
            matched: MatchKind::Path,
            same_as: None,
        });
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
            matched: MatchKind::Path,
            same_as: None,
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
                shell_by_path(&p.shells, &proc_of(exe, &["x"]), None).is_some(),
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
                shell_by_path(&p.shells, &proc_of(exe, &["sh"]), None),
                None,
                "{exe} with argv[0] sh is not a shell"
            );
        }
        let bb = proc_of("/usr/bin/busybox", &["sh", "-c", "id"]);
        assert_eq!(
            shell_by_path(&p.shells, &bb, None).and_then(|s| s.applet),
            Some("sh")
        );
        // The login form: busybox strips the leading '-'.
        let bb = proc_of("/usr/bin/busybox", &["-sh", "-c", "id"]);
        assert_eq!(
            shell_by_path(&p.shells, &bb, None).and_then(|s| s.applet),
            Some("sh")
        );
        let bb = proc_of("/bin/busybox", &["/bin/ash"]);
        assert_eq!(
            shell_by_path(&p.shells, &bb, None).and_then(|s| s.applet),
            Some("ash")
        );
        let bb = proc_of("/bin/busybox", &["busybox", "sh", "-c", "id"]);
        assert_eq!(
            shell_by_path(&p.shells, &bb, None).and_then(|s| s.applet),
            Some("sh")
        );
        let bb = proc_of("/bin/busybox", &["wget", "http://x"]);
        assert_eq!(shell_by_path(&p.shells, &bb, None), None);
        let unknown = ProcessInfo::default();
        assert_eq!(
            shell_by_path(&p.shells, &unknown, Some("/bin/sh")).map(|s| s.exe),
            Some("/bin/sh"),
            "filename fallback"
        );
    }
}
