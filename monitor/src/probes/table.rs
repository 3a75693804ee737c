//! The probe table: each logical hook (`listen`, `connect`, `exec`, `fork`, `exit`, `accept`,
//! `cred`, `setsid`, `pam`, `udp`, `udp_bind`) and the ways of attaching it, in order of
//! preference. [`super::attach`] walks it.

use monitor_common::{
    PROG_ACCEPT_SYS_EXIT_ACCEPT, PROG_BIND_SYS_ENTER_BIND, PROG_BIND_SYS_EXIT_BIND,
    PROG_CONNECT_INET_SOCK_SET_STATE, PROG_CONNECT_SYS_EXIT_CONNECT, PROG_CONNECT_TCP_CONNECT,
    PROG_CONNECT_TCP_RETRANSMIT_SKB, PROG_CRED_SYS_ENTER_SETUID, PROG_CRED_SYS_EXIT_SETSID,
    PROG_CRED_SYS_EXIT_SETUID, PROG_EXEC_SCHED_PROCESS_EXEC, PROG_LISTEN_INET_LISTEN,
    PROG_LISTEN_INET_SOCK_SET_STATE, PROG_LISTEN_SYS_EXIT_LISTEN, PROG_PAM_ACCT_MGMT,
    PROG_PAM_AUTHENTICATE, PROG_PAM_OPEN_SESSION, PROG_PROCESS_SCHED_PROCESS_EXIT,
    PROG_PROCESS_SCHED_PROCESS_FORK, PROG_UDP_SYS_ENTER_CONNECT, PROG_UDP_SYS_ENTER_SENDMMSG,
    PROG_UDP_SYS_ENTER_SENDMSG, PROG_UDP_SYS_ENTER_SENDTO, PROG_UDP_SYS_EXIT_CONNECT,
};

/// One way of attaching a logical hook.
#[derive(Clone, Copy, Debug)]
pub(super) enum Attach {
    /// fentry program on a kernel function (needs BTF and the socket offsets).
    FEntry {
        program: &'static str,
        function: &'static str,
    },
    TracePoint {
        program: &'static str,
        category: &'static str,
        name: &'static str,
    },
    /// A tracepoint program plus a `syscalls:sys_exit_<syscall>` program, so that a record parked
    /// at the tracepoint can wait for data it does not have yet (the source port a connect picks,
    /// the port a listen binds, whether the listen failed) until the syscall returns. Needs the
    /// socket offsets.
    TracePointInSyscall {
        program: &'static str,
        category: &'static str,
        name: &'static str,
        syscall: &'static str,
        exit: &'static str,
        /// Best effort: another tracepoint that sends a parked record sooner. When it does not
        /// attach, the rest still works; the report names it among the refusals.
        hasten: Option<Companion>,
    },
    /// `exit` attached to `syscalls:sys_exit_<s>` and, when given, `enter` to
    /// `syscalls:sys_enter_<s>`, for every syscall `s` (one program, several tracepoints).
    Syscalls {
        exit: &'static str,
        enter: Option<&'static str>,
        syscalls: &'static [&'static str],
        /// Reads the file table and executable inodes (`files_valid`), and sockets.
        needs_files: bool,
    },
    /// One program per `syscalls:` tracepoint: (program, tracepoint) pairs such as
    /// `(PROG_UDP_SYS_ENTER_SENDTO, "sys_enter_sendto")`, attached in this order, all or none
    /// (a `sys_exit_*` program that clears what its `sys_enter_*` parks comes first). They read
    /// the file table and sockets (`files_valid`, `sock_valid`).
    SyscallPoints {
        programs: &'static [(&'static str, &'static str)],
    },
    /// uretprobes on functions of a shared library (found through `ld.so.cache`): (program,
    /// function) pairs. Need the file-table offsets: they report only for watched executables.
    URetProbes {
        library: &'static str,
        probes: &'static [(&'static str, &'static str)],
    },
}

/// One logical hook and its attachments in order of preference. A required hook without any
/// working attachment stops the daemon; an optional one is reported as not attached (the
/// `started` status record says why) and what needs it degrades.
#[derive(Clone, Copy, Debug)]
pub(super) struct Hook {
    pub(super) name: &'static str,
    pub(super) required: bool,
    pub(super) attaches: &'static [Attach],
}

/// A tracepoint program attached alongside another attachment.
#[derive(Clone, Copy, Debug)]
pub(super) struct Companion {
    pub(super) program: &'static str,
    pub(super) category: &'static str,
    pub(super) name: &'static str,
}

impl Companion {
    pub(super) fn label(self) -> String {
        format!("tracepoint:{}:{}", self.category, self.name)
    }
}

impl Attach {
    #[cfg(test)]
    pub(super) fn program(self) -> &'static str {
        match self {
            Attach::FEntry { program, .. }
            | Attach::TracePoint { program, .. }
            | Attach::TracePointInSyscall { program, .. } => program,
            Attach::Syscalls { exit, .. } => exit,
            Attach::SyscallPoints { programs: probes } | Attach::URetProbes { probes, .. } => {
                probes.first().map_or("", |(program, _)| program)
            }
        }
    }

    /// Every program this attachment loads (a companion that did not take is simply not loaded).
    pub(super) fn programs(self) -> Vec<&'static str> {
        match self {
            Attach::TracePointInSyscall {
                program,
                exit,
                hasten,
                ..
            } => [Some(program), Some(exit), hasten.map(|c| c.program)]
                .into_iter()
                .flatten()
                .collect(),
            Attach::FEntry { program, .. } | Attach::TracePoint { program, .. } => vec![program],
            Attach::Syscalls { exit, enter, .. } => {
                [Some(exit), enter].into_iter().flatten().collect()
            }
            Attach::SyscallPoints { programs: probes } | Attach::URetProbes { probes, .. } => {
                probes.iter().map(|(program, _)| *program).collect()
            }
        }
    }

    /// The name the report uses: `fentry:inet_listen`, `tracepoint:sock:inet_sock_set_state`,
    /// `tracepoint:sock:inet_sock_set_state+syscalls:sys_exit_connect`.
    pub(super) fn label(self) -> String {
        match self {
            Attach::FEntry { function, .. } => format!("fentry:{function}"),
            Attach::TracePoint { category, name, .. } => format!("tracepoint:{category}:{name}"),
            Attach::TracePointInSyscall {
                category,
                name,
                syscall,
                ..
            } => format!("tracepoint:{category}:{name}+syscalls:sys_exit_{syscall}"),
            Attach::Syscalls {
                enter, syscalls, ..
            } => {
                let mut points: Vec<String> =
                    syscalls.iter().map(|s| format!("sys_exit_{s}")).collect();
                if enter.is_some() {
                    points.extend(syscalls.iter().map(|s| format!("sys_enter_{s}")));
                }
                format!("tracepoint:syscalls:{}", points.join(","))
            }
            Attach::SyscallPoints { programs } => {
                let points: Vec<&str> = programs.iter().map(|(_, point)| *point).collect();
                format!("tracepoint:syscalls:{}", points.join(","))
            }
            Attach::URetProbes { library, probes } => {
                let functions: Vec<&str> = probes.iter().map(|(_, f)| *f).collect();
                format!("uretprobe:{library}:{}", functions.join(","))
            }
        }
    }
}

/// The probe table: logical hook → attachments in order of preference.
pub(super) const PROBE_TABLE: &[Hook] = &[
    Hook {
        name: "listen",
        required: true,
        attaches: &[
            Attach::FEntry {
                program: PROG_LISTEN_INET_LISTEN,
                function: "inet_listen",
            },
            // TCP_LISTEN comes before get_port() binds the port and before the listen can still
            // fail: the record waits for listen(2) to return and goes out only if it returned 0.
            Attach::TracePointInSyscall {
                program: PROG_LISTEN_INET_SOCK_SET_STATE,
                category: "sock",
                name: "inet_sock_set_state",
                syscall: "listen",
                exit: PROG_LISTEN_SYS_EXIT_LISTEN,
                hasten: None,
            },
            // Same program without the brackets: every TCP_LISTEN is sent at once (port 0 for an
            // unbound socket, failed listens included).
            Attach::TracePoint {
                program: PROG_LISTEN_INET_SOCK_SET_STATE,
                category: "sock",
                name: "inet_sock_set_state",
            },
        ],
    },
    Hook {
        name: "connect",
        required: true,
        attaches: &[
            Attach::FEntry {
                program: PROG_CONNECT_TCP_CONNECT,
                function: "tcp_connect",
            },
            // SYN_SENT comes before inet_hash_connect() picks the source port: the records wait
            // for it, until connect(2) returns, the socket leaves SYN_SENT, or the SYN is
            // retransmitted, whichever comes first.
            Attach::TracePointInSyscall {
                program: PROG_CONNECT_INET_SOCK_SET_STATE,
                category: "sock",
                name: "inet_sock_set_state",
                syscall: "connect",
                exit: PROG_CONNECT_SYS_EXIT_CONNECT,
                hasten: Some(Companion {
                    program: PROG_CONNECT_TCP_RETRANSMIT_SKB,
                    category: "tcp",
                    name: "tcp_retransmit_skb",
                }),
            },
            // Same program without the syscall brackets: every record goes out at SYN_SENT,
            // with local port 0.
            Attach::TracePoint {
                program: PROG_CONNECT_INET_SOCK_SET_STATE,
                category: "sock",
                name: "inet_sock_set_state",
            },
        ],
    },
    Hook {
        name: "exec",
        required: true,
        attaches: &[Attach::TracePoint {
            program: PROG_EXEC_SCHED_PROCESS_EXEC,
            category: "sched",
            name: "sched_process_exec",
        }],
    },
    Hook {
        name: "fork",
        required: true,
        attaches: &[Attach::TracePoint {
            program: PROG_PROCESS_SCHED_PROCESS_FORK,
            category: "sched",
            name: "sched_process_fork",
        }],
    },
    Hook {
        name: "exit",
        required: true,
        attaches: &[Attach::TracePoint {
            program: PROG_PROCESS_SCHED_PROCESS_EXIT,
            category: "sched",
            name: "sched_process_exit",
        }],
    },
    // Inbound connections, for the login tracker (sshd's accepts) and the list rules. Optional:
    // without it (no file-table offsets) logins are not seen, everything else works.
    Hook {
        name: "accept",
        required: false,
        attaches: &[Attach::Syscalls {
            exit: PROG_ACCEPT_SYS_EXIT_ACCEPT,
            enter: None,
            syscalls: &["accept", "accept4"],
            needs_files: true,
        }],
    },
    // A session dropping to its user's credentials (setresuid in OpenSSH's user child).
    Hook {
        name: "cred",
        required: false,
        attaches: &[Attach::Syscalls {
            exit: PROG_CRED_SYS_EXIT_SETUID,
            enter: Some(PROG_CRED_SYS_ENTER_SETUID),
            syscalls: &["setuid", "setreuid", "setresuid"],
            needs_files: false,
        }],
    },
    // An SSH session's program becoming a session leader before its exec (PAM modules' helpers,
    // like pam_motd's, do not): tells the session's first program from theirs.
    Hook {
        name: "setsid",
        required: false,
        attaches: &[Attach::Syscalls {
            exit: PROG_CRED_SYS_EXIT_SETSID,
            enter: None,
            syscalls: &["setsid"],
            needs_files: false,
        }],
    },
    // UDP destinations (connect and the sends that name an address) of the processes the kernel
    // is told about, as connect records. Optional: without it (no file-table or socket offsets,
    // a refused program) UDP is not seen, everything else works. Its own programs, not a branch
    // of the connect hook's sys_enter_connect, which attaches only with one of connect's ways.
    // A UDP connect's record waits for sys_exit_connect, which adds the local side.
    Hook {
        name: "udp",
        required: false,
        attaches: &[Attach::SyscallPoints {
            programs: &[
                (PROG_UDP_SYS_EXIT_CONNECT, "sys_exit_connect"),
                (PROG_UDP_SYS_ENTER_CONNECT, "sys_enter_connect"),
                (PROG_UDP_SYS_ENTER_SENDTO, "sys_enter_sendto"),
                (PROG_UDP_SYS_ENTER_SENDMSG, "sys_enter_sendmsg"),
                (PROG_UDP_SYS_ENTER_SENDMMSG, "sys_enter_sendmmsg"),
            ],
        }],
    },
    // Open UDP ports: a UDP socket bound to a port of its program's choosing, as listen records
    // with protocol udp. Optional: without it (no file-table or socket offsets) UDP ports are
    // seen only by the start-up baseline.
    Hook {
        name: "udp_bind",
        required: false,
        attaches: &[Attach::Syscalls {
            exit: PROG_BIND_SYS_EXIT_BIND,
            enter: Some(PROG_BIND_SYS_ENTER_BIND),
            syscalls: &["bind"],
            needs_files: true,
        }],
    },
    // How a login authenticated; where uprobes are refused, logins are still seen, with method
    // `unknown`.
    Hook {
        name: "pam",
        required: false,
        attaches: &[Attach::URetProbes {
            library: "libpam.so.0",
            probes: &[
                (PROG_PAM_AUTHENTICATE, "pam_authenticate"),
                (PROG_PAM_ACCT_MGMT, "pam_acct_mgmt"),
                (PROG_PAM_OPEN_SESSION, "pam_open_session"),
            ],
        }],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_falls_back_to_the_bracketed_tracepoint_then_the_plain_one() {
        let attaches = PROBE_TABLE
            .iter()
            .find(|h| h.name == "connect")
            .expect("connect is in the probe table")
            .attaches;
        let labels: Vec<String> = attaches.iter().map(|a| a.label()).collect();
        assert_eq!(
            labels,
            [
                "fentry:tcp_connect",
                "tracepoint:sock:inet_sock_set_state+syscalls:sys_exit_connect",
                "tracepoint:sock:inet_sock_set_state",
            ]
        );
        // The bracketed variant is hastened by SYN retransmissions; when that part attaches the
        // report's label grows a `+tcp:tcp_retransmit_skb`.
        assert!(matches!(
            attaches[1],
            Attach::TracePointInSyscall {
                hasten: Some(Companion {
                    name: "tcp_retransmit_skb",
                    ..
                }),
                ..
            }
        ));
        // Both tracepoint variants run the same program, so the plain one only loses the port.
        assert_eq!(attaches[1].program(), attaches[2].program());
    }

    #[test]
    fn udp_is_optional_and_enters_four_syscalls_after_connects_exit() {
        let hook = PROBE_TABLE
            .iter()
            .find(|h| h.name == "udp")
            .expect("udp is in the probe table");
        assert!(!hook.required);
        let [attach] = hook.attaches else {
            panic!("one way of attaching udp: {:?}", hook.attaches)
        };
        assert_eq!(
            attach.label(),
            "tracepoint:syscalls:sys_exit_connect,sys_enter_connect,sys_enter_sendto,\
             sys_enter_sendmsg,sys_enter_sendmmsg"
        );
        // The exit first: no connect record is parked without its exit being seen.
        assert_eq!(
            attach.programs(),
            [
                PROG_UDP_SYS_EXIT_CONNECT,
                PROG_UDP_SYS_ENTER_CONNECT,
                PROG_UDP_SYS_ENTER_SENDTO,
                PROG_UDP_SYS_ENTER_SENDMSG,
                PROG_UDP_SYS_ENTER_SENDMMSG
            ]
        );
    }

    #[test]
    fn udp_bind_is_optional_and_brackets_bind() {
        let hook = PROBE_TABLE
            .iter()
            .find(|h| h.name == "udp_bind")
            .expect("udp_bind is in the probe table");
        assert!(!hook.required);
        let [attach] = hook.attaches else {
            panic!("one way of attaching udp_bind: {:?}", hook.attaches)
        };
        assert_eq!(
            attach.label(),
            "tracepoint:syscalls:sys_exit_bind,sys_enter_bind"
        );
        // The exit program first: attach.rs attaches in this order, so that no thread is parked
        // at sys_enter_bind without its exit being seen.
        assert_eq!(
            attach.programs(),
            [PROG_BIND_SYS_EXIT_BIND, PROG_BIND_SYS_ENTER_BIND]
        );
    }

    #[test]
    fn listen_falls_back_to_the_bracketed_tracepoint_then_the_plain_one() {
        let attaches = PROBE_TABLE
            .iter()
            .find(|h| h.name == "listen")
            .expect("listen is in the probe table")
            .attaches;
        let labels: Vec<String> = attaches.iter().map(|a| a.label()).collect();
        assert_eq!(
            labels,
            [
                "fentry:inet_listen",
                "tracepoint:sock:inet_sock_set_state+syscalls:sys_exit_listen",
                "tracepoint:sock:inet_sock_set_state",
            ]
        );
        assert_eq!(attaches[1].program(), attaches[2].program());
        let programs: Vec<&str> = attaches[1].programs();
        assert_eq!(
            programs,
            [PROG_LISTEN_INET_SOCK_SET_STATE, PROG_LISTEN_SYS_EXIT_LISTEN]
        );
    }
}
