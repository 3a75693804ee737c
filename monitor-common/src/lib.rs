//! Wire types shared by the eBPF programs (`monitor-ebpf`) and the daemon (`monitor`).
//!
//! Every record the kernel side writes into the ring buffer starts with an [`EventHeader`] whose
//! `kind` is an [`EventKind`]. All types are `#[repr(C)]`, `Copy`, free of `bool` and implicit
//! padding, and their sizes are asserted at compile time so both sides agree byte for byte.
//! Userspace never transmutes these bytes: `monitor::decode` checks lengths and reads them with
//! `ptr::read_unaligned`.
#![no_std]

/// Ring buffer carrying every event to userspace.
pub const MAP_EVENTS: &str = "EVENTS";
/// Per-CPU `u64` counter, index 0: events lost because the ring buffer was full.
pub const MAP_DROPS: &str = "DROPS";
/// Per-CPU `u64` counters, indexed by [`ErrorSlot`]: failures inside the eBPF programs.
pub const MAP_ERRORS: &str = "ERRORS";

/// `pid_tgid` → connect record parked at `TCP_SYN_SENT` until its source port is known
/// (connect(2) returns, the socket leaves `SYN_SENT`, or the SYN is retransmitted) (hash,
/// [`CONNECT_TRACKED_THREADS`] entries). Kernel-side only.
pub const MAP_CONNECT_PENDING: &str = "CONNECT_PENDING";
/// `struct sock *` → `pid_tgid` of the thread whose connect record for that socket is parked
/// (hash, [`CONNECT_TRACKED_THREADS`] entries). Kernel-side only.
pub const MAP_CONNECT_SOCKS: &str = "CONNECT_SOCKS";
/// Capacity of the connect maps: threads that can be inside connect(2) at once before the
/// fallback reports connects without their source port.
pub const CONNECT_TRACKED_THREADS: u32 = 8192;

/// `pid_tgid` → [`PendingListen`]: a listen record parked at `TCP_LISTEN` until listen(2)
/// returns: sent only when it returns 0, with the port `get_port()` bound (hash,
/// [`LISTEN_TRACKED_THREADS`] entries). A record no listen(2) returns for (`io_uring`) is sent by
/// the daemon, which deletes it first: whoever deletes a key sends its record.
pub const MAP_LISTEN_PENDING: &str = "LISTEN_PENDING";
/// Capacity of the listen maps: threads that can be inside listen(2) at once before the fallback
/// reports listens at once (port 0 for an unbound socket, failed listens included).
pub const LISTEN_TRACKED_THREADS: u32 = 1024;

/// `pid_tgid` → a UDP connect record parked at `syscalls:sys_enter_connect` until
/// `sys_exit_connect` fills in the local address and port the connect gave the socket (hash,
/// [`UDP_CONNECT_TRACKED_THREADS`] entries). Kernel-side only.
pub const MAP_UDP_CONNECT_PENDING: &str = "UDP_CONNECT_PENDING";
/// Capacity of [`MAP_UDP_CONNECT_PENDING`]: threads that can be inside a reported UDP connect(2)
/// at once before records are sent without their local side.
pub const UDP_CONNECT_TRACKED_THREADS: u32 = 1024;

/// `pid_tgid` → the UDP socket a thread is binding to a port of its choosing, parked at
/// `syscalls:sys_enter_bind` until `sys_exit_bind` says whether the bind succeeded (hash,
/// [`BIND_TRACKED_THREADS`] entries). Kernel-side only.
pub const MAP_BIND_PENDING: &str = "BIND_PENDING";
/// Capacity of [`MAP_BIND_PENDING`]: threads that can be inside a UDP bind(2) at once; a bind
/// that finds it full is counted in the `listen` error slot instead of reported.
pub const BIND_TRACKED_THREADS: u32 = 1024;

/// Inode number of `mm->exe_file` (`u64`) → flags ([`EXE_SSH_SERVER`]): executables userspace
/// watches (hash, [`WATCHED_EXES_MAX`] entries). The accept and PAM hooks report only for
/// processes running one of them, unless [`MAP_ACCEPT_FILTER`] says otherwise. Keyed by inode
/// alone: `stat`'s device numbers do not always match the kernel's `s_dev` (btrfs subvolumes,
/// overlayfs), and a collision across filesystems only costs a record userspace drops.
pub const MAP_WATCHED_EXES: &str = "WATCHED_EXES";
pub const WATCHED_EXES_MAX: u32 = 256;
/// The executable is an SSH server (`sshd`, `sshd-session`, `sshd-auth`).
pub const EXE_SSH_SERVER: u32 = 1 << 0;

/// LPM trie, key `{prefix_len, [u8; 16]}` (IPv4 as `::ffff:a.b.c.d`, prefix + 96) → flags: the
/// prefixes of the loaded lists. An accepted connection from one of them is reported whoever
/// accepts it. [`WATCHED_NETS_MAX`] entries; when the lists hold more, userspace switches
/// [`MAP_ACCEPT_FILTER`] to send every accept instead.
pub const MAP_WATCHED_NETS: &str = "WATCHED_NETS";
pub const WATCHED_NETS_MAX: u32 = 1 << 20;

/// Array of one `u32`: [`ACCEPT_SEND_ALL`] or [`ACCEPT_SEND_WATCHED`]. Set by userspace at start
/// (`--events` sends all) and after list reloads.
pub const MAP_ACCEPT_FILTER: &str = "ACCEPT_FILTER";
/// Only accepts by a watched executable or from a watched network reach userspace.
pub const ACCEPT_SEND_WATCHED: u32 = 0;
/// Every accepted TCP connection reaches userspace.
pub const ACCEPT_SEND_ALL: u32 = 1;

/// `pid_tgid` → real uid at `sys_enter_set*uid` (LRU hash, [`CRED_TRACKED_THREADS`] entries):
/// the exit reports only a change of the real uid. Kernel-side only.
pub const MAP_CRED_ENTER: &str = "CRED_ENTER";
pub const CRED_TRACKED_THREADS: u32 = 4096;

/// Thread-group id → flags ([`WEB_TREE_MARKED`]): processes under a web server (hash,
/// [`WEB_TREE_MAX`] entries). Userspace marks the web servers and the processes it finds under
/// them; the fork hook marks a new process (not a new thread) whose parent is marked, with the
/// parent's value, and the exit hook unmarks a thread group once it is gone. The UDP hooks report
/// for marked processes.
pub const MAP_WEB_TREE: &str = "WEB_TREE";
pub const WEB_TREE_MAX: u32 = 65536;
/// The value userspace gives a process it marks in [`MAP_WEB_TREE`].
pub const WEB_TREE_MARKED: u32 = 1 << 0;

/// uid → unused value: the web servers' service users (`www-data`, ...) (hash,
/// [`WEB_UIDS_MAX`] entries). The UDP hooks report for processes whose real uid is one of them.
pub const MAP_WEB_UIDS: &str = "WEB_UIDS";
pub const WEB_UIDS_MAX: u32 = 64;

/// Array of one [`Scope`]: what the kernel sends in the current mode. All zero (what the map
/// holds at load) sends everything, so nothing is filtered before userspace has marked the
/// processes that matter; the daemon narrows it once it has.
pub const MAP_SCOPE: &str = "SCOPE";
/// [`Scope::mode`]: every record reaches userspace (`--events`, and until start-up is done).
pub const SCOPE_ALL: u32 = 0;
/// [`Scope::mode`]: only what can raise an alert reaches userspace: connects and UDP destinations
/// of processes in scope (under a web server, a web server's user, or too new for userspace to
/// have judged), connects to watched networks, listens not on loopback (when the policy allows
/// every loopback listen), every exec (woken only in scope) and the lineage.
pub const SCOPE_ALERTS: u32 = 1;

/// What the kernel side sends, set by userspace ([`MAP_SCOPE`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// [`SCOPE_ALL`] or [`SCOPE_ALERTS`].
    pub mode: u32,
    /// `1`: [`MAP_WATCHED_NETS`] holds prefixes, so a connect of any process to one is wanted.
    pub watched_nets: u32,
    /// `1`: a listen (or UDP bind) on a loopback address cannot alert (the policy allows them
    /// all), so it is not sent in [`SCOPE_ALERTS`].
    pub skip_loopback_listens: u32,
    pub _pad0: u32,
    /// `CLOCK_BOOTTIME` ns up to which userspace has handled every exec and fork record: a
    /// process whose exec or fork ([`MAP_FRESH`]) is newer is in scope until then, since
    /// userspace may not have marked it yet.
    pub judged_ns: u64,
}
const _: () = assert!(core::mem::size_of::<Scope>() == 24);

/// Thread-group id → `bpf_ktime_get_boot_ns()` of its last exec, or of its fork for a process
/// that has not exec'd (LRU hash, [`FRESH_MAX`] entries): how new each process is, against
/// [`Scope::judged_ns`]. Kernel-side only; the exit hook removes a group's entry.
pub const MAP_FRESH: &str = "FRESH";
pub const FRESH_MAX: u32 = 16384;

/// [`UdpSeenKey`] → `bpf_ktime_get_boot_ns()` of the report: the (process, destination) pairs
/// already reported, each reported once (LRU hash, [`UDP_SEEN_MAX`] entries: a pair evicted by
/// newer ones is reported again). Kernel-side only.
pub const MAP_UDP_SEEN: &str = "UDP_SEEN";
pub const UDP_SEEN_MAX: u32 = 8192;

/// Key of [`MAP_UDP_SEEN`]: a process and one UDP destination, in [`SockEvent`]'s layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpSeenKey {
    pub tgid: u32,
    /// Destination port, host byte order.
    pub port: u16,
    /// The socket's family ([`SockEvent::family`]).
    pub family: u16,
    /// Destination address as in [`SockEvent::daddr`].
    pub addr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<UdpSeenKey>() == 24);

/// Global (set by the loader before load): the daemon's own thread-group id, ignored by every hook.
pub const GLOBAL_MONITOR_TGID: &str = "MONITOR_TGID";

/// Global (set by the loader before load): `1` makes every program return at once, for the
/// benchmark's kernel floor (`monitor --bench-floor`): the same hooks attached, no work done.
/// The verifier sees the frozen value and drops the branch that is not taken.
pub const GLOBAL_FLOOR: &str = "FLOOR";

/// Global (set by the loader before load): a [`KernelOffsets`] filled from the kernel's BTF.
pub const GLOBAL_KERNEL_OFFSETS: &str = "KERNEL_OFFSETS";

/// Program names, `<area>_<hook>`, shared by the eBPF object and the loader's probe table.
pub const PROG_LISTEN_INET_LISTEN: &str = "listen_inet_listen";
pub const PROG_LISTEN_INET_SOCK_SET_STATE: &str = "listen_inet_sock_set_state";
/// Helpers of the listen fallback: they bracket listen(2) so that the `TCP_LISTEN` record (set
/// before `get_port()` binds the port and before the listen can still fail) waits for the result.
pub const PROG_LISTEN_SYS_EXIT_LISTEN: &str = "listen_sys_exit_listen";
pub const PROG_CONNECT_TCP_CONNECT: &str = "connect_tcp_connect";
pub const PROG_CONNECT_INET_SOCK_SET_STATE: &str = "connect_inet_sock_set_state";
/// Helpers of the connect fallback: they bracket connect(2) so that the `SYN_SENT` record can wait
/// for the source port (`inet_hash_connect()` picks it after the tracepoint fires).
pub const PROG_CONNECT_SYS_EXIT_CONNECT: &str = "connect_sys_exit_connect";
/// Optional helper of the connect fallback: a SYN retransmission (`tcp:tcp_retransmit_skb` in
/// `TCP_SYN_SENT`) sends the parked record, so a connect to a silent peer is reported after the
/// initial RTO (1 s) instead of when connect(2) gives up.
pub const PROG_CONNECT_TCP_RETRANSMIT_SKB: &str = "connect_tcp_retransmit_skb";
/// `syscalls:sys_enter_{connect,sendto,sendmsg,sendmmsg}`: the destination a UDP socket is
/// connected or sent to, reported as a connect (only for the processes [`MAP_SCOPE`] asks
/// about, once per process and destination).
pub const PROG_UDP_SYS_ENTER_CONNECT: &str = "udp_sys_enter_connect";
/// `syscalls:sys_exit_connect`: sends the record `udp_sys_enter_connect` parked, with the local
/// address and port the connect gave the socket.
pub const PROG_UDP_SYS_EXIT_CONNECT: &str = "udp_sys_exit_connect";
pub const PROG_UDP_SYS_ENTER_SENDTO: &str = "udp_sys_enter_sendto";
pub const PROG_UDP_SYS_ENTER_SENDMSG: &str = "udp_sys_enter_sendmsg";
pub const PROG_UDP_SYS_ENTER_SENDMMSG: &str = "udp_sys_enter_sendmmsg";
/// `syscalls:sys_enter_bind` and `sys_exit_bind`: a UDP socket explicitly bound to a non-zero
/// port, reported as a listen record with protocol UDP when bind(2) returns 0 (an open UDP port).
pub const PROG_BIND_SYS_ENTER_BIND: &str = "bind_sys_enter_bind";
pub const PROG_BIND_SYS_EXIT_BIND: &str = "bind_sys_exit_bind";
pub const PROG_EXEC_SCHED_PROCESS_EXEC: &str = "exec_sched_process_exec";
pub const PROG_PROCESS_SCHED_PROCESS_FORK: &str = "process_sched_process_fork";
pub const PROG_PROCESS_SCHED_PROCESS_EXIT: &str = "process_sched_process_exit";
/// `syscalls:sys_exit_accept` and `sys_exit_accept4`: the accepted socket, read from the new
/// descriptor.
pub const PROG_ACCEPT_SYS_EXIT_ACCEPT: &str = "accept_sys_exit_accept";
/// `syscalls:sys_enter_{setuid,setreuid,setresuid}` and the matching `sys_exit_*`: a change of
/// the real uid.
pub const PROG_CRED_SYS_ENTER_SETUID: &str = "cred_sys_enter_setuid";
pub const PROG_CRED_SYS_EXIT_SETUID: &str = "cred_sys_exit_setuid";
/// `syscalls:sys_exit_setsid`: a process became a session leader (an SSH session's program does
/// before it execs; PAM modules' helpers do not).
pub const PROG_CRED_SYS_EXIT_SETSID: &str = "cred_sys_exit_setsid";
/// uretprobes on libpam's public entry points: their return values (never their arguments).
pub const PROG_PAM_AUTHENTICATE: &str = "pam_authenticate";
pub const PROG_PAM_ACCT_MGMT: &str = "pam_acct_mgmt";
pub const PROG_PAM_OPEN_SESSION: &str = "pam_open_session";

/// Default ring buffer size in bytes (a power of two and a multiple of the page size).
pub const DEFAULT_RING_BUFFER_BYTES: u32 = 1 << 22;

/// Number of argv bytes copied for an exec (NUL-separated, as in `/proc/<pid>/cmdline`).
pub const ARGS_LEN: usize = 2048;
/// Number of bytes kept of the path the kernel was asked to execute.
pub const FILENAME_LEN: usize = 512;
/// Number of bytes kept of the resolved executable path.
pub const EXE_LEN: usize = 512;
/// Task command name length (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;

/// `AF_INET` / `AF_INET6` as the kernel writes them into [`SockEvent::family`].
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
/// `AF_UNSPEC`: a connect(2) to it dissolves a UDP socket's association.
pub const AF_UNSPEC: u16 = 0;
/// `IPPROTO_TCP` and `IPPROTO_UDP`, as the kernel writes them into [`SockEvent::protocol`].
pub const IPPROTO_TCP: u16 = 6;
pub const IPPROTO_UDP: u16 = 17;

/// Event kinds. The numbers are part of the wire format: never reuse or renumber one.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Listen = 1,
    Connect = 2,
    Exec = 3,
    Fork = 4,
    Exit = 5,
    /// An inbound TCP connection accepted ([`SockEvent`]: local = the accepting side).
    Accept = 6,
    /// The real uid of a process changed ([`CredEvent`]).
    Cred = 7,
    /// A libpam call returned ([`PamEvent`]).
    Pam = 8,
    /// A process became a session leader ([`SetsidEvent`]).
    Setsid = 9,
}

impl TryFrom<u32> for EventKind {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Ok(match value {
            1 => Self::Listen,
            2 => Self::Connect,
            3 => Self::Exec,
            4 => Self::Fork,
            5 => Self::Exit,
            6 => Self::Accept,
            7 => Self::Cred,
            8 => Self::Pam,
            9 => Self::Setsid,
            other => return Err(other),
        })
    }
}

/// Which kernel hook produced a socket event (stable numbers, like [`EventKind`]).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    FentryInetListen = 1,
    FentryTcpConnect = 2,
    TracepointInetSockSetState = 3,
    TracepointSchedProcessExec = 4,
    TracepointSchedProcessFork = 5,
    TracepointSchedProcessExit = 6,
    TracepointSysExitAccept = 7,
    TracepointSysExitSetuid = 8,
    UretprobePam = 9,
    TracepointSysExitSetsid = 10,
    /// UDP: connect(2) of a UDP socket.
    TracepointSysEnterConnect = 11,
    /// UDP: sendto(2) with a destination address.
    TracepointSysEnterSendto = 12,
    /// UDP: sendmsg(2) with a `msg_name`.
    TracepointSysEnterSendmsg = 13,
    /// UDP: sendmmsg(2), the first message's `msg_name`.
    TracepointSysEnterSendmmsg = 14,
    /// UDP: bind(2) to a non-zero port returned 0 (a listen record with protocol UDP).
    TracepointSysExitBind = 15,
}

impl TryFrom<u32> for Hook {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Ok(match value {
            1 => Self::FentryInetListen,
            2 => Self::FentryTcpConnect,
            3 => Self::TracepointInetSockSetState,
            4 => Self::TracepointSchedProcessExec,
            5 => Self::TracepointSchedProcessFork,
            6 => Self::TracepointSchedProcessExit,
            7 => Self::TracepointSysExitAccept,
            8 => Self::TracepointSysExitSetuid,
            9 => Self::UretprobePam,
            10 => Self::TracepointSysExitSetsid,
            11 => Self::TracepointSysEnterConnect,
            12 => Self::TracepointSysEnterSendto,
            13 => Self::TracepointSysEnterSendmsg,
            14 => Self::TracepointSysEnterSendmmsg,
            15 => Self::TracepointSysExitBind,
            other => return Err(other),
        })
    }
}

/// Slots of the [`MAP_ERRORS`] per-CPU array: one per program area.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorSlot {
    Listen = 0,
    Connect = 1,
    Exec = 2,
    Fork = 3,
    Exit = 4,
    Accept = 5,
    Cred = 6,
    Pam = 7,
}
pub const ERROR_SLOTS: u32 = 8;

impl ErrorSlot {
    /// Every slot, in index order.
    pub const ALL: [Self; ERROR_SLOTS as usize] = [
        Self::Listen,
        Self::Connect,
        Self::Exec,
        Self::Fork,
        Self::Exit,
        Self::Accept,
        Self::Cred,
        Self::Pam,
    ];

    /// The area's name, as the status record's `errors` object keys it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Listen => "listen",
            Self::Connect => "connect",
            Self::Exec => "exec",
            Self::Fork => "fork",
            Self::Exit => "exit",
            Self::Accept => "accept",
            Self::Cred => "cred",
            Self::Pam => "pam",
        }
    }
}

/// [`EventHeader::euid`] not read (`(uid_t)-1`, never a real uid).
pub const EUID_UNKNOWN: u32 = u32::MAX;

/// Common prefix of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`] as `u32`.
    pub kind: u32,
    /// A [`Hook`] as `u32`: which hook produced this record.
    pub hook: u32,
    /// `bpf_ktime_get_boot_ns()`: nanoseconds since boot (`CLOCK_BOOTTIME`), suspend included.
    pub ktime_ns: u64,
    /// Thread id of the current task (`pid` in kernel terms).
    pub tid: u32,
    /// Thread-group id of the current task: what `ps` calls the pid.
    pub tgid: u32,
    /// Thread-group id of `current->real_parent`, 0 when the kernel side could not read it.
    pub ppid: u32,
    /// Real uid and gid (`bpf_get_current_uid_gid()`).
    pub uid: u32,
    pub gid: u32,
    /// Effective uid (`current->cred->euid`): a setuid program's differs from `uid`. Read only
    /// for the records of what a process does with its privileges, [`EventKind::Exec`],
    /// `Listen`, `Connect`, `Accept`, and for `Cred`; [`EUID_UNKNOWN`] in the others (fork and
    /// exit, the frequent ones, skip the two reads) and when the kernel side could not read it.
    pub euid: u32,
    /// `bpf_get_current_cgroup_id()` (cgroup v2 id).
    pub cgroup_id: u64,
    /// `current->comm`, NUL-padded.
    pub comm: [u8; COMM_LEN],
}
const _: () = assert!(core::mem::size_of::<EventHeader>() == 64);

/// `listen`, `connect` and `accept` (TCP, IPv4 and IPv6), UDP destinations (kind `connect`,
/// [`IPPROTO_UDP`]: the address a UDP socket is connected or sent to) and open UDP ports (kind
/// `listen`, [`IPPROTO_UDP`]: a UDP socket bound to a port of its choosing). Local and remote are
/// the socket's own sides: for an accepted connection, local is the listening address and remote
/// the client; for a UDP destination, local is the socket's address when a send starts (port 0
/// until its first send or connect binds one), or when a connect(2) has returned, and remote the
/// destination the call names; for an open UDP port, local is the address and port bind(2) gave
/// it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockEvent {
    pub header: EventHeader,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// [`IPPROTO_TCP`] or [`IPPROTO_UDP`].
    pub protocol: u16,
    /// Local port, host byte order.
    pub sport: u16,
    /// Remote port, host byte order (0 for listen).
    pub dport: u16,
    /// Local address: IPv4 in the first 4 bytes, or IPv6 (network byte order).
    pub saddr: [u8; 16],
    /// Remote address, same layout as `saddr`.
    pub daddr: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<SockEvent>() == 104);

/// A listen record parked in [`MAP_LISTEN_PENDING`], and the socket its bound port is read from
/// when listen(2) returns.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PendingListen {
    pub event: SockEvent,
    /// `struct sock *` from the tracepoint's `skaddr` (only ever probe-read).
    pub sk: u64,
}
const _: () = assert!(core::mem::size_of::<PendingListen>() == 112);

/// Flags of [`ExecEvent::flags`].
pub const EXEC_ARGS_TRUNCATED: u32 = 1 << 0;
pub const EXEC_FILENAME_TRUNCATED: u32 = 1 << 1;
/// The kernel side resolved `current->mm->exe_file` into [`ExecEvent::exe`].
pub const EXEC_EXE_RESOLVED: u32 = 1 << 2;
pub const EXEC_EXE_TRUNCATED: u32 = 1 << 3;
/// The kernel side read the executable's inode (`mm->exe_file->f_inode`) into the `exe_*`
/// identity fields of [`ExecEvent`].
pub const EXEC_EXE_FILE_ID: u32 = 1 << 4;

/// `exec` (`sched:sched_process_exec`): execve, execveat and fexecve alike. The header describes
/// the task after the exec (its `tgid` is the process' pid, `comm` the new program's).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// Thread id that called exec (differs from `tid` when a non-leader thread exec'd).
    pub old_tid: u32,
    /// `EXEC_*` flags.
    pub flags: u32,
    /// Valid bytes in `filename`.
    pub filename_len: u32,
    /// Valid bytes in `exe`.
    pub exe_len: u32,
    /// Valid bytes in `args`.
    pub args_len: u32,
    pub _pad0: u32,
    /// `i_ino` of the executable's inode, when `EXEC_EXE_FILE_ID` (the `exe_*` fields are 0
    /// otherwise).
    pub exe_ino: u64,
    /// `i_size`, bytes.
    pub exe_size: u64,
    /// `i_mtime` seconds since the epoch.
    pub exe_mtime_sec: i64,
    /// `i_mtime` nanoseconds.
    pub exe_mtime_nsec: u32,
    /// `i_sb->s_dev` in the kernel's `dev_t` encoding (major << 20 | minor), not `stat`'s.
    pub exe_dev: u32,
    /// The path the kernel executed (`bprm->filename`, may be relative or `/dev/fd/N`).
    pub filename: [u8; FILENAME_LEN],
    /// The resolved executable path (`mm->exe_file`), when `EXEC_EXE_RESOLVED`.
    pub exe: [u8; EXE_LEN],
    /// argv as NUL-separated strings (`mm->arg_start..arg_end`).
    pub args: [u8; ARGS_LEN],
}
const _: () =
    assert!(core::mem::size_of::<ExecEvent>() == 64 + 56 + FILENAME_LEN + EXE_LEN + ARGS_LEN);

/// `fork` (`sched:sched_process_fork`): the header describes the parent (current task).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkEvent {
    pub header: EventHeader,
    /// Thread id of the new task (equal to its tgid unless it is a thread).
    pub child_tid: u32,
    /// Thread-group id of the new task, 0 when the kernel side could not read it.
    pub child_tgid: u32,
}
const _: () = assert!(core::mem::size_of::<ForkEvent>() == 72);

/// `exit` (`sched:sched_process_exit`), sent only when the whole thread group is gone
/// (`group_dead`). The header describes the exiting task.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitEvent {
    pub header: EventHeader,
    /// `task->exit_code` (wait status encoding), when readable.
    pub exit_code: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 72);

/// `cred` (`sys_exit_setuid`, `sys_exit_setreuid`, `sys_exit_setresuid` returning 0 with a new
/// real uid). The header carries the new uid and gid.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CredEvent {
    pub header: EventHeader,
    /// The real uid before the call (`u32::MAX` when the entry was not seen).
    pub old_uid: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<CredEvent>() == 72);

/// `setsid` (`sys_exit_setsid` returning the new session id).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SetsidEvent {
    pub header: EventHeader,
    /// The new session id (the caller's pid).
    pub sid: u32,
    pub _pad0: u32,
}
const _: () = assert!(core::mem::size_of::<SetsidEvent>() == 72);

/// Which libpam entry point a [`PamEvent`] is about (stable numbers).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PamCall {
    Authenticate = 1,
    AcctMgmt = 2,
    OpenSession = 3,
}

impl TryFrom<u32> for PamCall {
    type Error = u32;

    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Ok(match value {
            1 => Self::Authenticate,
            2 => Self::AcctMgmt,
            3 => Self::OpenSession,
            other => return Err(other),
        })
    }
}

/// `pam` (a uretprobe on a libpam entry point, in a watched executable): the call and its return
/// value, nothing else (never an argument: no password, no PAM handle).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PamEvent {
    pub header: EventHeader,
    /// A [`PamCall`] as `u32`.
    pub call: u32,
    /// The return value (`PAM_SUCCESS` = 0).
    pub ret: i32,
}
const _: () = assert!(core::mem::size_of::<PamEvent>() == 72);

/// Marks an absent member or tracepoint field in [`KernelOffsets`].
pub const OFFSET_ABSENT: u32 = u32::MAX;

/// Kernel struct member offsets (bytes) and tracepoint field offsets, found by the loader in
/// `/sys/kernel/btf/vmlinux` and `/sys/kernel/tracing/events/*/*/format`, and handed to the eBPF
/// programs as the [`GLOBAL_KERNEL_OFFSETS`] global. aya-ebpf has no CO-RE relocations for Rust,
/// so this struct stands in for them.
///
/// When `valid` is 0 the programs read no kernel memory through these offsets: exec records come
/// without `EXEC_EXE_RESOLVED`, with `args_len` 0 and `ppid` 0, and userspace falls back to
/// `/proc`. `sock_valid` plays the same role for the fentry socket hooks and the connect
/// fallback's source port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// 1 when every task/mm/path offset below (down to `vfsmount_mnt_root`) was found.
    pub valid: u32,
    /// 1 when every socket offset below was found (used by the fentry programs, and by the
    /// connect fallback to read the source port when connect(2) returns).
    pub sock_valid: u32,
    /// 1 when the thread-list offsets (`task_signal`, `task_thread_node`,
    /// `signal_thread_head`, `task_pid`) were found: fork records then carry `child_tgid`.
    pub threads_valid: u32,

    pub task_mm: u32,
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_pid: u32,
    pub task_exit_code: u32,
    pub task_signal: u32,
    pub task_thread_node: u32,
    pub signal_thread_head: u32,
    pub mm_exe_file: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub file_f_path: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name: u32,
    pub qstr_len: u32,
    pub qstr_name: u32,
    /// Offset of the `struct vfsmount` embedded in `struct mount` (`container_of`).
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    pub vfsmount_mnt_root: u32,

    pub socket_sk: u32,
    pub skc_family: u32,
    pub skc_num: u32,
    pub skc_dport: u32,
    pub skc_rcv_saddr: u32,
    pub skc_daddr: u32,
    pub skc_v6_rcv_saddr: u32,
    pub skc_v6_daddr: u32,
    /// `sock.sk_protocol` in bits from the start of `struct sock` (a bitfield before Linux 5.6).
    pub sk_protocol_bit_offset: u32,
    /// Width of `sock.sk_protocol` in bits (8 as a bitfield, 16 as a `u16`).
    pub sk_protocol_bits: u32,

    /// `sched:sched_process_fork`: offset of `child_pid` (moved when the comms became
    /// `__data_loc` strings).
    pub tp_fork_child_pid: u32,
    /// `sched:sched_process_exit`: offset of `group_dead`, [`OFFSET_ABSENT`] on kernels whose
    /// tracepoint lacks it (every task exit is then reported when `tid == tgid`).
    pub tp_exit_group_dead: u32,

    /// `sock_common.skc_state` (part of the `sock_valid` group): the fentry `inet_listen`
    /// program skips sockets that are not in `TCP_CLOSE` (re-listen, which only sets the backlog).
    pub skc_state: u32,
    /// `dentry.d_hash` (an `hlist_bl_node`; part of the `valid` group): `d_hash.pprev == NULL`
    /// means the dentry is unhashed, i.e. the file was deleted.
    pub dentry_d_hash: u32,

    /// 1 when every file-table and inode offset below was found (with `valid`): the accept hook
    /// then reads the accepted socket from its descriptor, and the accept and PAM hooks know the
    /// executable by inode.
    pub files_valid: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_private_data: u32,
    /// `socket.file`: the accept hook checks that the descriptor's file is the socket's own.
    pub socket_file: u32,
    pub file_f_inode: u32,
    pub inode_i_ino: u32,

    /// 1 when every inode offset below was found (with `valid`, and `file_f_inode` and
    /// `inode_i_ino` above): exec records then carry the executable's identity
    /// (`EXEC_EXE_FILE_ID`).
    pub file_id_valid: u32,
    pub inode_i_size: u32,
    pub inode_i_sb: u32,
    pub super_block_s_dev: u32,
    /// `inode.i_mtime_sec` (a `time64_t`, Linux 6.11+), or `tv_sec` of the older `struct
    /// timespec64 __i_mtime` (6.6 to 6.10) / `i_mtime` (before 6.6).
    pub inode_i_mtime_sec: u32,
    /// `inode.i_mtime_nsec` (a `u32`, Linux 6.11+), or the low half of `tv_nsec` of the older
    /// timespec64. That one is a `long` and the eBPF side reads a `u32`: the loader points at the
    /// half that holds the value (below 10^9), the first 4 bytes on little-endian kernels.
    pub inode_i_mtime_nsec: u32,

    /// 1 when the two credential offsets below were found: exec, socket and cred records then
    /// carry the effective uid ([`EventHeader::euid`]).
    pub cred_valid: u32,
    /// `task_struct.cred`: the subjective credentials, the ones `bpf_get_current_uid_gid()`
    /// reads the real uid from.
    pub task_cred: u32,
    /// `cred.euid` (a `kuid_t`, one `u32`).
    pub cred_euid: u32,
}
const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 57 * 4);

impl KernelOffsets {
    /// Nothing known: `valid` and `sock_valid` are 0; tracepoint fields have their Linux 6.18
    /// offsets (the loader overwrites them from tracefs when it can read the format files).
    pub const UNKNOWN: Self = Self {
        valid: 0,
        sock_valid: 0,
        threads_valid: 0,
        task_mm: 0,
        task_real_parent: 0,
        task_tgid: 0,
        task_pid: 0,
        task_exit_code: 0,
        task_signal: 0,
        task_thread_node: 0,
        signal_thread_head: 0,
        mm_exe_file: 0,
        mm_arg_start: 0,
        mm_arg_end: 0,
        file_f_path: 0,
        path_mnt: 0,
        path_dentry: 0,
        dentry_d_parent: 0,
        dentry_d_name: 0,
        qstr_len: 0,
        qstr_name: 0,
        mount_mnt: 0,
        mount_mnt_parent: 0,
        mount_mnt_mountpoint: 0,
        vfsmount_mnt_root: 0,
        socket_sk: 0,
        skc_family: 0,
        skc_num: 0,
        skc_dport: 0,
        skc_rcv_saddr: 0,
        skc_daddr: 0,
        skc_v6_rcv_saddr: 0,
        skc_v6_daddr: 0,
        sk_protocol_bit_offset: 0,
        sk_protocol_bits: 0,
        tp_fork_child_pid: 20,
        tp_exit_group_dead: 32,
        skc_state: 0,
        dentry_d_hash: 0,
        files_valid: 0,
        task_files: 0,
        files_fdt: 0,
        fdtable_max_fds: 0,
        fdtable_fd: 0,
        file_private_data: 0,
        socket_file: 0,
        file_f_inode: 0,
        inode_i_ino: 0,
        file_id_valid: 0,
        inode_i_size: 0,
        inode_i_sb: 0,
        super_block_s_dev: 0,
        inode_i_mtime_sec: 0,
        inode_i_mtime_nsec: 0,
        cred_valid: 0,
        task_cred: 0,
        cred_euid: 0,
    };
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all types are repr(C), Copy, built only of integers and byte arrays, and have no
    // implicit padding (sizes are asserted above).
    unsafe impl aya::Pod for super::EventHeader {}
    unsafe impl aya::Pod for super::SockEvent {}
    unsafe impl aya::Pod for super::ExecEvent {}
    unsafe impl aya::Pod for super::ForkEvent {}
    unsafe impl aya::Pod for super::ExitEvent {}
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::CredEvent {}
    unsafe impl aya::Pod for super::PamEvent {}
    unsafe impl aya::Pod for super::SetsidEvent {}
    unsafe impl aya::Pod for super::Scope {}
    unsafe impl aya::Pod for super::PendingListen {}
}
