//! The probe table: each logical hook (`listen`, `connect`, `exec`, `fork`, `exit`) and the ways
//! of attaching it, in order of preference. [`super::attach`] walks it.

use monitor_common::{
    PROG_CONNECT_INET_SOCK_SET_STATE, PROG_CONNECT_SYS_ENTER_CONNECT,
    PROG_CONNECT_SYS_EXIT_CONNECT, PROG_CONNECT_TCP_CONNECT, PROG_CONNECT_TCP_RETRANSMIT_SKB,
    PROG_EXEC_SCHED_PROCESS_EXEC, PROG_LISTEN_INET_LISTEN, PROG_LISTEN_INET_SOCK_SET_STATE,
    PROG_LISTEN_SYS_ENTER_LISTEN, PROG_LISTEN_SYS_EXIT_LISTEN, PROG_PROCESS_SCHED_PROCESS_EXIT,
    PROG_PROCESS_SCHED_PROCESS_FORK,
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
    /// A tracepoint program plus `syscalls:sys_enter_<syscall>` / `sys_exit_<syscall>` programs
    /// that bracket the syscall, so that a record can wait inside it for data the tracepoint does
    /// not have yet (the connect fallback's source port). Needs the socket offsets.
    TracePointInSyscall {
        program: &'static str,
        category: &'static str,
        name: &'static str,
        syscall: &'static str,
        enter: &'static str,
        exit: &'static str,
        /// Best effort: another tracepoint that sends a parked record sooner. When it does not
        /// attach, the rest still works; the report names it among the refusals.
        hasten: Option<Companion>,
    },
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
    pub(super) fn program(self) -> &'static str {
        match self {
            Attach::FEntry { program, .. }
            | Attach::TracePoint { program, .. }
            | Attach::TracePointInSyscall { program, .. } => program,
        }
    }

    /// Every program this attachment loads (a companion that did not take is simply not loaded).
    pub(super) fn programs(self) -> impl Iterator<Item = &'static str> {
        let (brackets, hasten) = match self {
            Attach::TracePointInSyscall {
                enter,
                exit,
                hasten,
                ..
            } => ([Some(enter), Some(exit)], hasten.map(|c| c.program)),
            Attach::FEntry { .. } | Attach::TracePoint { .. } => ([None, None], None),
        };
        core::iter::once(self.program()).chain(brackets.into_iter().chain([hasten]).flatten())
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
        }
    }
}

/// The probe table: logical hook → attachments in order of preference.
pub(super) const PROBE_TABLE: &[(&str, &[Attach])] = &[
    (
        "listen",
        &[
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
                enter: PROG_LISTEN_SYS_ENTER_LISTEN,
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
    ),
    (
        "connect",
        &[
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
                enter: PROG_CONNECT_SYS_ENTER_CONNECT,
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
    ),
    (
        "exec",
        &[Attach::TracePoint {
            program: PROG_EXEC_SCHED_PROCESS_EXEC,
            category: "sched",
            name: "sched_process_exec",
        }],
    ),
    (
        "fork",
        &[Attach::TracePoint {
            program: PROG_PROCESS_SCHED_PROCESS_FORK,
            category: "sched",
            name: "sched_process_fork",
        }],
    ),
    (
        "exit",
        &[Attach::TracePoint {
            program: PROG_PROCESS_SCHED_PROCESS_EXIT,
            category: "sched",
            name: "sched_process_exit",
        }],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_falls_back_to_the_bracketed_tracepoint_then_the_plain_one() {
        let (_, attaches) = PROBE_TABLE
            .iter()
            .find(|(hook, _)| *hook == "connect")
            .expect("connect is in the probe table");
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
    fn listen_falls_back_to_the_bracketed_tracepoint_then_the_plain_one() {
        let (_, attaches) = PROBE_TABLE
            .iter()
            .find(|(hook, _)| *hook == "listen")
            .expect("listen is in the probe table");
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
        let programs: Vec<&str> = attaches[1].programs().collect();
        assert_eq!(
            programs,
            [
                PROG_LISTEN_INET_SOCK_SET_STATE,
                PROG_LISTEN_SYS_ENTER_LISTEN,
                PROG_LISTEN_SYS_EXIT_LISTEN
            ]
        );
    }
}
