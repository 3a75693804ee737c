//! SSH logins from kernel facts (docs/login.md): an SSH server process accepted connection C;
//! the process tree forked for C (the tag is inherited through fork) then either drops to a
//! user's real uid (OpenSSH's user child calls setresuid), or starts the session's program (a
//! session leader, after setsid, executing something that is not an SSH server: how a root
//! session shows, where OpenSSH 9.2 changes no uid), or, for a session that does neither (root
//! with `-N` or the internal sftp server), authenticates and waits: the pre-authentication child
//! exits with status 0 only after a success, and libpam's `pam_open_session` returns 0. A failed
//! authentication does none of these.
//!
//! The tracker is fed the kernel events in order ([`Logins::on_accept`], [`Logins::on_fork`],
//! [`Logins::on_exec`], [`Logins::on_cred`], [`Logins::on_pam`], [`Logins::on_exit`]) and hands
//! back each [`Login`] once. A drop to a user's uid waits a moment ([`COMMAND_WAIT_NS`]) for the
//! session's first program, so that the login names its command; [`Logins::due`] releases what
//! waited long enough.
//!
//! Executables are recognised by path (the kernel's resolved `mm->exe_file`), never by comm:
//! OpenSSH 9.8 runs sessions as `sshd-session`, 10.x also has `sshd-auth`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::{
    matcher::{ExeGlob, matches_any},
    record::{LoginMethod as Method, SocketInfo},
    validate::{self, PolicyError, Source, or_base, unspanned},
};

/// How long a session that dropped to its user's uid waits for its first program (the command)
/// before the login is reported without one: sshd execs it within milliseconds.
pub const COMMAND_WAIT_NS: u64 = 300_000_000;
/// How long an authenticated session (pre-authentication child exited 0, or PAM session opened)
/// waits for the uid drop or the first program before it is reported as a login of the
/// monitor's uid (root with `-N` or internal-sftp).
pub const SESSION_WAIT_NS: u64 = 1_000_000_000;

/// `PAM_SUCCESS`.
const PAM_SUCCESS: i32 = 0;

/// The `[logins]` section of the policy.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// SSH server executables, full paths (globs allowed): the listener and the session
    /// processes OpenSSH re-executes (`sshd -R`, `sshd-session`, `sshd-auth`).
    pub ssh_servers: Vec<ExeGlob>,
    /// Users OpenSSH's privilege-separated children drop to (`sshd`): not logins.
    pub privsep_users: Vec<String>,
}

impl Config {
    pub fn is_ssh_server(&self, exe: Option<&str>) -> bool {
        exe.is_some_and(|exe| matches_any(&self.ssh_servers, exe))
    }
}

/// The section's shape in the policy file.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigInput {
    #[serde(skip_serializing_if = "Option::is_none")]
    ssh_servers: Option<Vec<Spanned<String>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    privsep_users: Option<Vec<String>>,
}

impl Config {
    pub fn validate(
        input: ConfigInput,
        base: Option<&Self>,
        src: &Source<'_>,
    ) -> Result<Self, PolicyError> {
        let key = "logins";
        let ssh_servers = match input.ssh_servers {
            Some(list) => {
                for (i, path) in list.iter().enumerate() {
                    if !path.get_ref().starts_with('/') {
                        return Err(src.error(
                            Some(&path.span()),
                            &format!("{key}.ssh_servers[{i}]"),
                            format!(
                                "`{}` is not an absolute path: SSH servers are known by their \
                                 executable's full path",
                                path.get_ref()
                            ),
                        ));
                    }
                }
                Some(validate::globs(&list, &format!("{key}.ssh_servers"), src)?)
            }
            None => None,
        };
        Ok(Self {
            ssh_servers: or_base(
                ssh_servers,
                base.map(|b| b.ssh_servers.clone()),
                src,
                &format!("{key}.ssh_servers"),
            )?,
            privsep_users: or_base(
                input.privsep_users,
                base.map(|b| b.privsep_users.clone()),
                src,
                &format!("{key}.privsep_users"),
            )?,
        })
    }

    pub fn to_input(&self) -> ConfigInput {
        ConfigInput {
            ssh_servers: Some(
                self.ssh_servers
                    .iter()
                    .map(|g| unspanned(g.as_str().to_owned()))
                    .collect(),
            ),
            privsep_users: Some(self.privsep_users.clone()),
        }
    }
}

/// What turned a session into a login.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The session dropped to the user's real uid (setresuid / setuid).
    Credentials,
    /// The session ran a program that is not an SSH server.
    Exec,
    /// The session authenticated (pre-authentication child exited 0, or libpam opened the
    /// session), and nothing else followed (root with `-N` or internal-sftp).
    Authenticated,
}

/// A recognised login, for the enrich stage to turn into a `login` record.
#[derive(Clone, Debug, PartialEq)]
pub struct Login {
    /// The process the login is reported for: the first program of the session, else the
    /// process that dropped to the user's uid, else the session's monitor.
    pub pid: u32,
    pub uid: u32,
    /// `CLOCK_BOOTTIME` of the kernel fact that completed the login.
    pub ktime_ns: u64,
    /// The connection, as accepted.
    pub socket: SocketInfo,
    /// The SSH server process that accepted the connection.
    pub listener: u32,
    /// The first process forked for the connection (OpenSSH's monitor, `sshd: user [priv]`).
    pub session: u32,
    /// The first program the session ran, when it ran one.
    pub command: Option<Vec<String>>,
    pub method: Method,
    pub trigger: Trigger,
}

/// A connection an SSH server accepted.
#[derive(Clone, Debug)]
struct Accepted {
    socket: SocketInfo,
}

/// What libpam said in a session.
#[derive(Clone, Copy, Debug, Default)]
struct PamSeen {
    /// `pam_authenticate` succeeded, in the monitor (`Some(true)`) or a helper child.
    authenticated_in_monitor: Option<bool>,
    acct_ok: bool,
}

/// A session waiting to become a login.
#[derive(Clone, Debug)]
struct Session {
    socket: SocketInfo,
    listener: u32,
    monitor: u32,
    /// The monitor's first child: OpenSSH's pre-authentication (`[net]`) child, which exits with
    /// status 0 only after a successful authentication.
    preauth: Option<u32>,
    /// Members that became session leaders (setsid): the session's program is one of them.
    leaders: Vec<u32>,
    /// Processes of the tree still alive.
    members: usize,
    pam: PamSeen,
    /// The uid drop that makes it a login (pid, uid, ktime), waiting for the command.
    dropped: Option<(u32, u32, u64)>,
    /// The pre-authentication child exited 0, or PAM opened the session.
    authenticated: bool,
    /// When it is reported without waiting longer.
    deadline: Option<u64>,
    reported: bool,
}

impl Session {
    /// Authenticated at `ktime_ns`: a login, even without a uid drop or a program, once
    /// [`SESSION_WAIT_NS`] has passed.
    fn authenticated(&mut self, ktime_ns: u64) {
        self.authenticated = true;
        if !self.reported && self.deadline.is_none() {
            self.deadline = Some(ktime_ns.saturating_add(SESSION_WAIT_NS));
        }
    }

    fn method(&self) -> Method {
        match self.pam.authenticated_in_monitor {
            Some(true) => Method::Password,
            Some(false) => Method::KeyboardInteractive,
            None if self.pam.acct_ok => Method::Publickey,
            None => Method::Unknown,
        }
    }

    fn login(
        &mut self,
        pid: u32,
        uid: u32,
        ktime_ns: u64,
        trigger: Trigger,
        command: Option<Vec<String>>,
    ) -> Login {
        self.reported = true;
        self.deadline = None;
        Login {
            pid,
            uid,
            ktime_ns,
            socket: self.socket.clone(),
            listener: self.listener,
            session: self.monitor,
            command,
            method: self.method(),
            trigger,
        }
    }
}

/// Joins SSH connections to the sessions forked for them and recognises logins.
#[derive(Debug, Default)]
pub struct Logins {
    /// Accepted by an SSH server process and not yet handed to a child, by the accepting
    /// process. sshd forks for a connection before it accepts the next one, and one it refuses
    /// (`MaxStartups`) is closed without a fork: the newest accept is the one a fork is for.
    accepted: HashMap<u32, Accepted>,
    /// Session by id.
    sessions: HashMap<u64, Session>,
    /// Every live process of a session's tree → its session id.
    members: HashMap<u32, u64>,
    next_id: u64,
}

impl Logins {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sessions being tracked (for the status record).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// An inbound connection accepted by process `tgid`; `ssh_server` when its executable is one.
    pub fn on_accept(&mut self, tgid: u32, socket: &SocketInfo, ssh_server: bool) {
        if ssh_server && socket.remote.is_some() {
            self.accepted.insert(
                tgid,
                Accepted {
                    socket: socket.clone(),
                },
            );
        }
    }

    /// `parent` forked `child`: the child of a listener that just accepted starts that
    /// connection's session; a session member's child joins its session.
    pub fn on_fork(&mut self, parent: u32, child: u32) {
        if let Some(accepted) = self.accepted.remove(&parent) {
            let id = self.next_id;
            self.next_id += 1;
            self.sessions.insert(
                id,
                Session {
                    socket: accepted.socket,
                    listener: parent,
                    monitor: child,
                    preauth: None,
                    leaders: Vec::new(),
                    members: 1,
                    pam: PamSeen::default(),
                    dropped: None,
                    authenticated: false,
                    deadline: None,
                    reported: false,
                },
            );
            self.members.insert(child, id);
        } else if let Some(&id) = self.members.get(&parent)
            && let Some(session) = self.sessions.get_mut(&id)
        {
            session.members += 1;
            if parent == session.monitor && session.preauth.is_none() {
                session.preauth = Some(child);
            }
            self.members.insert(child, id);
        }
    }

    /// Process `tgid` (running as `uid`) executed `exe` with `argv`. The first program a
    /// session leader of the session runs that is not an SSH server completes its login, with
    /// that argv as the command. (`pam_motd`'s `sh -c run-parts …`, forked by the monitor during
    /// `pam_open_session`, is not a session leader.)
    pub fn on_exec(
        &mut self,
        config: &Config,
        tgid: u32,
        uid: u32,
        exe: Option<&str>,
        argv: &[String],
        ktime_ns: u64,
    ) -> Option<Login> {
        let session = self.session_of(tgid)?;
        if session.reported
            || config.is_ssh_server(exe)
            || tgid == session.monitor
            || !session.leaders.contains(&tgid)
        {
            return None;
        }
        // The uid dropped earlier is the user's; an exec without one is a root session.
        let uid = session.dropped.map_or(uid, |(_, uid, _)| uid);
        Some(session.login(tgid, uid, ktime_ns, Trigger::Exec, Some(argv.to_vec())))
    }

    /// Process `tgid`'s real uid became `uid` (`user` is its name). Not a login yet: it waits
    /// [`COMMAND_WAIT_NS`] for the session's first program. Neither the privilege-separated
    /// child's drop to the `sshd` user nor the monitor's own switches (`pam_keyinit` sets its real
    /// uid to the user's and straight back during `pam_open_session`) are the user's drop.
    pub fn on_cred(
        &mut self,
        config: &Config,
        tgid: u32,
        uid: u32,
        user: Option<&str>,
        ktime_ns: u64,
    ) {
        if user.is_some_and(|u| config.privsep_users.iter().any(|p| p == u)) {
            return;
        }
        let Some(session) = self.session_of(tgid) else {
            return;
        };
        if session.reported || session.dropped.is_some() || tgid == session.monitor {
            return;
        }
        session.dropped = Some((tgid, uid, ktime_ns));
        session.deadline = Some(ktime_ns.saturating_add(COMMAND_WAIT_NS));
    }

    /// Process `tgid` became a session leader.
    pub fn on_setsid(&mut self, tgid: u32) {
        if let Some(session) = self.session_of(tgid)
            && !session.leaders.contains(&tgid)
        {
            session.leaders.push(tgid);
        }
    }

    /// A libpam call returned in process `tgid`.
    pub fn on_pam(&mut self, tgid: u32, call: monitor_common::PamCall, ret: i32, ktime_ns: u64) {
        let Some(session) = self.session_of(tgid) else {
            return;
        };
        let monitor = session.monitor;
        if ret != PAM_SUCCESS {
            return;
        }
        match call {
            monitor_common::PamCall::Authenticate => {
                if session.pam.authenticated_in_monitor.is_none() {
                    session.pam.authenticated_in_monitor = Some(tgid == monitor);
                }
            }
            monitor_common::PamCall::AcctMgmt => session.pam.acct_ok = true,
            monitor_common::PamCall::OpenSession => session.authenticated(ktime_ns),
        }
    }

    /// Process `tgid` exited with wait status `status`. A login still waiting for its command is
    /// reported now, without one, when the process that dropped to the user (or the session)
    /// ends; the pre-authentication child's status 0 says the session authenticated.
    pub fn on_exit(&mut self, tgid: u32, status: u32, ktime_ns: u64) -> Option<Login> {
        self.accepted.remove(&tgid);
        let id = self.members.remove(&tgid)?;
        let session = self.sessions.get_mut(&id)?;
        session.members = session.members.saturating_sub(1);
        if session.preauth == Some(tgid) && status == 0 {
            session.authenticated(ktime_ns);
        }
        // Only the end of the process that dropped to the user, of the monitor, or of the last
        // process ends the wait: the `[net]` child exits while the session goes on.
        let ends_wait = session.dropped.is_some_and(|(pid, _, _)| pid == tgid)
            || tgid == session.monitor
            || session.members == 0;
        let login = if session.reported || !ends_wait {
            None
        } else {
            Self::release(session, ktime_ns)
        };
        if session.members == 0 {
            self.sessions.remove(&id);
        }
        login
    }

    /// The earliest time a waiting login is due, `CLOCK_BOOTTIME`.
    pub fn next_deadline(&self) -> Option<u64> {
        self.sessions
            .values()
            .filter(|s| !s.reported)
            .filter_map(|s| s.deadline)
            .min()
    }

    /// The logins whose wait ended at `now_ns` (`CLOCK_BOOTTIME`).
    pub fn due(&mut self, now_ns: u64) -> Vec<Login> {
        let mut out = Vec::new();
        for session in self.sessions.values_mut() {
            if session.reported || session.deadline.is_none_or(|d| d > now_ns) {
                continue;
            }
            if let Some(login) = Self::release(session, now_ns) {
                out.push(login);
            }
        }
        out.sort_by_key(|l| (l.ktime_ns, l.pid));
        out
    }

    /// The login a waiting session stands for, if it has become one: a uid drop, or an opened
    /// PAM session (reported with the monitor's uid, which is root's in OpenSSH 9.2).
    fn release(session: &mut Session, now_ns: u64) -> Option<Login> {
        if let Some((pid, uid, at)) = session.dropped {
            return Some(session.login(pid, uid, at, Trigger::Credentials, None));
        }
        if session.authenticated && session.deadline.is_some_and(|d| d <= now_ns) {
            let monitor = session.monitor;
            return Some(session.login(monitor, 0, now_ns, Trigger::Authenticated, None));
        }
        None
    }

    fn session_of(&mut self, tgid: u32) -> Option<&mut Session> {
        let id = self.members.get(&tgid)?;
        self.sessions.get_mut(id)
    }
}

#[cfg(test)]
mod tests {
    //! The sequences are OpenSSH 9.2p1's on Debian 12, as traced with tracepoints and libpam
    //! uretprobes (docs/research/sshd-9.2-trace.md): the same order of kernel facts, with the
    //! processes renamed L, M, NET, U, S.

    use monitor_common::PamCall;

    use super::*;
    use crate::{
        policy::Policy,
        record::{Endpoint, Family, Protocol},
        testing::{ip, strings},
    };

    const MS: u64 = 1_000_000;
    /// `exit(255)`: how every sshd process ends but a successful pre-authentication child.
    const EXIT_255: u32 = 0xff00;
    const L: u32 = 100; // the listener
    const M: u32 = 200; // the monitor forked for the connection (`sshd: alice [priv]`)
    const NET: u32 = 201; // the privilege-separated pre-authentication child
    const MOTD: u32 = 202; // pam_motd's `sh -c run-parts …`
    const U: u32 = 203; // the user child
    const S: u32 = 204; // the session's program
    const PAM: u32 = 205; // keyboard-interactive's PAM child

    fn config() -> Config {
        Policy::embedded_default().logins
    }

    fn socket() -> SocketInfo {
        SocketInfo {
            protocol: Protocol::Tcp,
            family: Family::Ipv4,
            local: Endpoint {
                ip: ip("10.77.0.1"),
                port: 2222,
            },
            remote: Some(Endpoint {
                ip: ip("10.77.0.2"),
                port: 50_000,
            }),
            mapped_ipv4: false,
        }
    }

    /// Every connection: the listener accepts and forks M, which calls setsid, re-executes
    /// sshd and forks the pre-authentication child, which drops to the `sshd` user.
    fn preauth(t: &mut Logins, c: &Config) {
        t.on_accept(L, &socket(), true);
        t.on_fork(L, M);
        t.on_setsid(M);
        assert_eq!(
            t.on_exec(
                c,
                M,
                0,
                Some("/usr/sbin/sshd"),
                &strings(&["/usr/sbin/sshd", "-D", "-R"]),
                MS
            ),
            None
        );
        t.on_fork(M, NET);
        t.on_cred(c, NET, 102, Some("sshd"), 7 * MS);
    }

    /// After a successful authentication of `uid` by key: `acct_mgmt`, the pre-authentication
    /// child exits 0, `pam_keyinit` switches M's real uid there and back (non-root), `pam_motd` runs
    /// its script, and the PAM session opens.
    fn authenticated(t: &mut Logins, c: &Config, uid: u32) {
        t.on_pam(M, PamCall::AcctMgmt, 0, 143 * MS);
        assert_eq!(t.on_exit(NET, 0, 143 * MS), None);
        if uid != 0 {
            t.on_cred(c, M, uid, Some("alice"), 144 * MS);
            t.on_cred(c, M, 0, Some("root"), 144 * MS);
        }
        t.on_fork(M, MOTD);
        assert_eq!(
            t.on_exec(
                c,
                MOTD,
                0,
                Some("/usr/bin/dash"),
                &strings(&["sh", "-c", "/usr/bin/env -i PATH=/usr/bin run-parts --lsbsysinit /etc/update-motd.d > /run/motd.dynamic.new"]),
                145 * MS
            ),
            None,
            "pam_motd's script is not the session's program"
        );
        assert_eq!(t.on_exit(MOTD, 0, 149 * MS), None);
        t.on_pam(M, PamCall::OpenSession, 0, 151 * MS);
    }

    /// The user child drops to alice (uid 1001) and forks the session's program, which becomes
    /// a session leader.
    fn user_child(t: &mut Logins, c: &Config) {
        t.on_fork(M, U);
        t.on_cred(c, U, 1001, Some("alice"), 153 * MS);
        t.on_fork(U, S);
        t.on_setsid(S);
    }

    #[test]
    fn publickey_command_is_a_login_with_its_command() {
        let (mut t, c) = (Logins::new(), config());
        preauth(&mut t, &c);
        authenticated(&mut t, &c, 1001);
        user_child(&mut t, &c);
        assert!(t.due(190 * MS).is_empty(), "waits for the command");
        let login = t
            .on_exec(
                &c,
                S,
                1001,
                Some("/usr/bin/bash"),
                &strings(&["bash", "-c", "id"]),
                195 * MS,
            )
            .expect("a login");
        assert_eq!(
            login,
            Login {
                pid: S,
                uid: 1001,
                ktime_ns: 195 * MS,
                socket: socket(),
                listener: L,
                session: M,
                command: Some(strings(&["bash", "-c", "id"])),
                method: Method::Publickey,
                trigger: Trigger::Exec,
            }
        );
        // Once: later programs of the session are not logins.
        assert_eq!(
            t.on_exec(
                &c,
                S,
                1001,
                Some("/usr/bin/id"),
                &strings(&["id"]),
                197 * MS
            ),
            None
        );
        assert!(t.due(10_000 * MS).is_empty());
        for pid in [S, U, M] {
            assert_eq!(t.on_exit(pid, EXIT_255, 200 * MS), None);
        }
        assert!(
            t.is_empty(),
            "the session is forgotten with its last process"
        );
    }

    #[test]
    fn pty_and_sftp_sessions_name_their_first_program() {
        for argv in [
            &["-bash"][..],
            &["bash", "-c", "/usr/lib/openssh/sftp-server"],
        ] {
            let (mut t, c) = (Logins::new(), config());
            preauth(&mut t, &c);
            authenticated(&mut t, &c, 1001);
            user_child(&mut t, &c);
            let login = t
                .on_exec(&c, S, 1001, Some("/usr/bin/bash"), &strings(argv), 236 * MS)
                .expect("a login");
            assert_eq!(login.command, Some(strings(argv)));
            assert_eq!(
                (login.pid, login.uid, login.trigger),
                (S, 1001, Trigger::Exec)
            );
        }
    }

    #[test]
    fn a_session_without_a_program_is_a_login_once_its_wait_ends() {
        // `ssh -N` (or the internal sftp server): the user child drops to alice and runs nothing.
        let (mut t, c) = (Logins::new(), config());
        preauth(&mut t, &c);
        authenticated(&mut t, &c, 1001);
        t.on_fork(M, U);
        t.on_cred(&c, U, 1001, Some("alice"), 153 * MS);
        assert_eq!(t.next_deadline(), Some(153 * MS + COMMAND_WAIT_NS));
        assert!(t.due(153 * MS + COMMAND_WAIT_NS - 1).is_empty());
        let logins = t.due(153 * MS + COMMAND_WAIT_NS);
        assert_eq!(logins.len(), 1);
        let login = &logins[0];
        assert_eq!((login.pid, login.uid, login.ktime_ns), (U, 1001, 153 * MS));
        assert_eq!(login.command, None);
        assert_eq!(login.trigger, Trigger::Credentials);
        assert_eq!(t.next_deadline(), None);
        // A session that ends while waiting is reported at its end, not lost.
        let (mut t, c) = (Logins::new(), config());
        preauth(&mut t, &c);
        authenticated(&mut t, &c, 1001);
        t.on_fork(M, U);
        t.on_cred(&c, U, 1001, Some("alice"), 153 * MS);
        let login = t
            .on_exit(U, EXIT_255, 160 * MS)
            .expect("reported at the end");
        assert_eq!((login.pid, login.uid), (U, 1001));
    }

    #[test]
    fn root_sessions_change_no_uid() {
        // OpenSSH 9.2 turns privilege separation off for root: M forks the program itself.
        let (mut t, c) = (Logins::new(), config());
        preauth(&mut t, &c);
        authenticated(&mut t, &c, 0);
        t.on_fork(M, S);
        t.on_setsid(S);
        let login = t
            .on_exec(
                &c,
                S,
                0,
                Some("/usr/bin/bash"),
                &strings(&["bash", "-c", "id"]),
                194 * MS,
            )
            .expect("a login");
        assert_eq!(
            (login.pid, login.uid, login.method),
            (S, 0, Method::Publickey)
        );
        // Root with -N: only the authentication tells (the pre-authentication child's exit 0
        // and the opened PAM session), then nothing happens.
        let (mut t, c) = (Logins::new(), config());
        preauth(&mut t, &c);
        authenticated(&mut t, &c, 0);
        assert!(t.due(143 * MS + SESSION_WAIT_NS - 1).is_empty());
        let logins = t.due(143 * MS + SESSION_WAIT_NS);
        assert_eq!(logins.len(), 1);
        assert_eq!(
            (logins[0].pid, logins[0].uid, logins[0].trigger),
            (M, 0, Trigger::Authenticated)
        );
        // Without uprobes the pre-authentication child's exit status alone does it.
        let (mut t, c) = (Logins::new(), config());
        preauth(&mut t, &c);
        assert_eq!(t.on_exit(NET, 0, 143 * MS), None);
        let logins = t.due(143 * MS + SESSION_WAIT_NS);
        assert_eq!(logins.len(), 1);
        assert_eq!(logins[0].method, Method::Unknown);
    }

    #[test]
    fn a_failed_authentication_is_not_a_login() {
        // A wrong key: the pre-authentication child dropped to sshd, M swapped only its
        // effective uid (the kernel side does not report that), the connection ends with exit
        // statuses 255.
        let (mut t, c) = (Logins::new(), config());
        preauth(&mut t, &c);
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.on_exit(NET, EXIT_255, 500 * MS), None);
        assert_eq!(t.on_exit(M, EXIT_255, 501 * MS), None);
        assert!(t.due(100_000 * MS).is_empty());
        assert!(t.is_empty());
        // A wrong keyboard-interactive password: the PAM child exits 0 too, it is not the
        // pre-authentication child.
        let (mut t, c) = (Logins::new(), config());
        preauth(&mut t, &c);
        t.on_fork(M, PAM);
        t.on_pam(PAM, PamCall::Authenticate, 7, 1_800 * MS);
        assert_eq!(t.on_exit(PAM, 0, 1_800 * MS), None);
        assert_eq!(t.on_exit(NET, EXIT_255, 1_900 * MS), None);
        assert_eq!(t.on_exit(M, EXIT_255, 1_901 * MS), None);
        assert!(t.due(100_000 * MS).is_empty());
    }

    #[test]
    fn the_method_comes_from_pam() {
        let login_with = |pam: &[(u32, PamCall, i32)]| {
            let (mut t, c) = (Logins::new(), config());
            preauth(&mut t, &c);
            t.on_fork(M, PAM);
            for &(pid, call, ret) in pam {
                t.on_pam(pid, call, ret, 30 * MS);
            }
            t.on_exit(NET, 0, 143 * MS);
            user_child(&mut t, &c);
            t.on_exec(
                &c,
                S,
                1001,
                Some("/usr/bin/bash"),
                &strings(&["-bash"]),
                195 * MS,
            )
            .expect("a login")
            .method
        };
        use PamCall::{AcctMgmt, Authenticate};
        assert_eq!(login_with(&[(M, AcctMgmt, 0)]), Method::Publickey);
        assert_eq!(
            login_with(&[(M, Authenticate, 7), (M, Authenticate, 0), (M, AcctMgmt, 0)]),
            Method::Password
        );
        assert_eq!(
            login_with(&[(PAM, Authenticate, 0), (PAM, AcctMgmt, 0)]),
            Method::KeyboardInteractive
        );
        assert_eq!(login_with(&[]), Method::Unknown, "no uprobes");
    }

    #[test]
    fn the_newest_accept_is_the_forked_one_and_other_servers_are_not_sessions() {
        let (mut t, c) = (Logins::new(), config());
        let mut first = socket();
        first.remote.as_mut().unwrap().port = 40_000;
        // MaxStartups: the first connection is closed without a fork.
        t.on_accept(L, &first, true);
        t.on_accept(L, &socket(), true);
        t.on_fork(L, M);
        t.on_fork(M, NET);
        t.on_exit(NET, 0, 143 * MS);
        user_child(&mut t, &c);
        let login = t
            .on_exec(
                &c,
                S,
                1001,
                Some("/usr/bin/bash"),
                &strings(&["-bash"]),
                195 * MS,
            )
            .expect("a login");
        assert_eq!(login.socket.remote.unwrap().port, 50_000);
        // A web server's accept starts nothing, and its children's uid drops are not logins.
        let mut t = Logins::new();
        t.on_accept(300, &socket(), false);
        t.on_fork(300, 301);
        t.on_cred(&c, 301, 33, Some("www-data"), MS);
        assert!(t.due(u64::MAX).is_empty());
        assert!(t.is_empty());
    }

    #[test]
    fn ssh_servers_are_known_by_path_of_every_openssh_layout() {
        let c = config();
        for exe in [
            "/usr/sbin/sshd",
            "/usr/lib/openssh/sshd-session",
            "/usr/lib/openssh/sshd-auth",
            "/usr/sbin/sshd (deleted)",
        ] {
            assert!(c.is_ssh_server(Some(exe)), "{exe}");
        }
        for exe in ["/tmp/sshd", "/usr/bin/ssh", "/usr/lib/openssh/sftp-server"] {
            assert!(!c.is_ssh_server(Some(exe)), "{exe}");
        }
        assert!(!c.is_ssh_server(None));
    }
}

#[cfg(test)]
mod config_tests {
    use crate::policy::Policy;

    #[test]
    fn ssh_servers_are_absolute_paths() {
        let e = Policy::from_toml_str("[logins]\nssh_servers = [\"sshd\"]\n", "policy.toml")
            .expect_err("a basename");
        assert!(
            e.to_string().starts_with(
                "policy.toml:2:16: logins.ssh_servers[0]: `sshd` is not an absolute path"
            ),
            "{e}"
        );
        let p = Policy::from_toml_str(
            "[logins]\nssh_servers = [\"/opt/openssh/sbin/sshd\"]\nprivsep_users = [\"sshd\", \"_sshd\"]\n",
            "policy.toml",
        )
        .expect("valid");
        assert!(p.logins.is_ssh_server(Some("/opt/openssh/sbin/sshd")));
        assert!(!p.logins.is_ssh_server(Some("/usr/sbin/sshd")));
        assert_eq!(p.logins.privsep_users, ["sshd", "_sshd"]);
    }
}
