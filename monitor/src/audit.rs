//! `monitor audit [--policy FILE]`: the daemon's start-up baseline on its own, for cron, Ansible
//! or a CI job (it replaces the `ss -tlnp | comm` baseline script). Every socket listening now, in
//! every network namespace ([`baseline::scan_listeners`]), becomes the same `listen` record with
//! `pre_existing` as at the daemon's start ([`Enricher::pre_existing_listener`], over a process
//! table seeded from `/proc` and catalogued like the daemon's: [`daemon::host_stages`]), is judged
//! by the same [`Detector`], and its alerts are written by the same [`Output`]. No eBPF is
//! loaded.
//!
//! Exit codes: 0 no alert, 1 alerts ([`Summary::exit_code`]), 2 bad input (the policy or its list
//! files, checked by `main` before anything is scanned), 3 the audit could not be done
//! ([`AuditError`]: no `/proc` table readable, stdout failing).

use std::{io::Write, sync::Arc};

use crate::{
    baseline::{self, BaselineError, ListeningSocket},
    clock, daemon,
    detect::Detector,
    enrich::Enricher,
    iplist::IpLists,
    output::{Output, OutputError},
    policy::Policy,
    process_table::ProcessTable,
    record::Record,
};

/// Exit code: alerts were printed (0 when none; 2, bad input, is the command line's).
pub const EXIT_ALERTS: u8 = 1;
/// Exit code: the audit could not be done ([`AuditError`]); 1 already means "alerts".
pub const EXIT_FAILED: u8 = 3;

/// What an audit saw and raised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Listening sockets judged.
    pub listeners: usize,
    /// Network namespaces they were found in.
    pub namespaces: usize,
    /// Alerts printed (repeats of one dedup key, e.g. the same program on the same port over
    /// IPv4 and IPv6, are printed once, as the daemon does).
    pub alerts: usize,
}

impl Summary {
    /// 0 without alerts, [`EXIT_ALERTS`] with.
    pub fn exit_code(&self) -> u8 {
        if self.alerts == 0 { 0 } else { EXIT_ALERTS }
    }
}

/// Why an audit could not be done ([`EXIT_FAILED`]; bad input never gets this far).
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot scan the listening sockets: {0}")]
    Scan(#[from] BaselineError),
    #[error("cannot start: {0}")]
    Setup(String),
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// Audits the host: its `/proc`, its users and programs, under `policy` (its `lists` loaded by
/// the caller, as the daemon loads them, so that a bad list file is bad input before any scan).
pub fn run<W: Write>(
    policy: &Policy,
    lists: Option<&IpLists>,
    out: &mut Output<W>,
) -> Result<Summary, AuditError> {
    // In the daemon's order: the table is seeded, then the sockets are scanned.
    let (mut table, mut enricher) =
        daemon::host_stages(policy).map_err(|e| AuditError::Setup(format!("{e:#}")))?;
    if let Some(lists) = lists {
        enricher.set_lists(lists.database());
    }
    let listeners = baseline::scan_listeners()?;
    judge(&listeners, policy, &mut table, &mut enricher, out)
}

/// Judges `listeners` as the daemon's start-up baseline does and writes their alerts; the
/// stages are the caller's (the live host's, or a test's fake `/proc`).
pub fn judge<W: Write>(
    listeners: &[ListeningSocket],
    policy: &Policy,
    table: &mut ProcessTable,
    enricher: &mut Enricher,
    out: &mut Output<W>,
) -> Result<Summary, AuditError> {
    let mut detector = Detector::new(Arc::new(policy.clone()));
    let time = clock::now_rfc3339();
    let mut summary = Summary {
        listeners: listeners.len(),
        ..Summary::default()
    };
    let mut namespaces: Vec<u64> = listeners.iter().map(|s| s.netns).collect();
    namespaces.sort_unstable();
    namespaces.dedup();
    summary.namespaces = namespaces.len();
    for socket in listeners {
        let record = enricher.pre_existing_listener(table, socket, &time);
        // No ring buffer, so nothing can have been lost: `events_lost` is 0.
        for alert in detector.on_event(&record, 0) {
            summary.alerts += 1;
            out.write(&Record::Alert(alert))?;
        }
    }
    out.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use std::{fs, net::TcpListener, os::unix::fs::symlink};

    use serde_json::Value;

    use super::*;
    use crate::{
        clock::Clock,
        host::UserNames,
        identity::Catalog,
        testing::{TempDir, fake_proc},
    };

    /// The alert lines an output buffer holds, parsed.
    fn lines(out: &Output<Vec<u8>>) -> Vec<Value> {
        String::from_utf8(out.get_ref().clone())
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// A fake host: init (pid 1), socat (pid 40, uid 1000) holding 0.0.0.0:4444 in the host
    /// namespace, and python3 (pid 50) in a second namespace holding [::]:8080 and
    /// 127.0.0.1:5000; a passwd file naming uid 1000.
    fn fake_host(dir: &TempDir) -> (Vec<ListeningSocket>, ProcessTable, Enricher) {
        let proc_root = dir.path().join("proc");
        fake_proc(&proc_root, 1, 0, "init", Some("/sbin/init"), &["init"], 1);
        fake_proc(
            &proc_root,
            40,
            1,
            "socat",
            Some("/usr/bin/socat"),
            &["socat", "TCP4-LISTEN:4444", "STDOUT"],
            2,
        );
        fake_proc(
            &proc_root,
            50,
            1,
            "python3",
            Some("/usr/bin/python3.11"),
            &["python3", "-m", "http.server", "8080"],
            3,
        );
        let tables = [
            (
                1,
                4_026_531_840u64,
                "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:115C 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 7001 1 0 100 0 0 10 0\n",
                "  sl  local_address remote_address st\n",
                &[][..],
            ),
            (40, 4_026_531_840, "", "", &[7001u64][..]),
            (
                50,
                4_026_532_999,
                "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 7003 1 0 100 0 0 10 0\n",
                "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 7002 1 0 100 0 0 10 0\n",
                &[7002, 7003][..],
            ),
        ];
        for (pid, netns, tcp, tcp6, sockets) in tables {
            let p = proc_root.join(pid.to_string());
            fs::create_dir_all(p.join("ns")).unwrap();
            fs::create_dir_all(p.join("fd")).unwrap();
            fs::create_dir_all(p.join("net")).unwrap();
            symlink(format!("net:[{netns}]"), p.join("ns/net")).unwrap();
            for (i, inode) in sockets.iter().enumerate() {
                symlink(format!("socket:[{inode}]"), p.join(format!("fd/{}", i + 3))).unwrap();
            }
            if !tcp.is_empty() {
                fs::write(p.join("net/tcp"), tcp).unwrap();
                fs::write(p.join("net/tcp6"), tcp6).unwrap();
                // A namespace's UDP tables, empty (the header only), as the kernel has them.
                let header = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n";
                fs::write(p.join("net/udp"), header).unwrap();
                fs::write(p.join("net/udp6"), header).unwrap();
            }
        }
        fs::write(
            dir.path().join("passwd"),
            "alice:x:1000:1000::/home/alice:/bin/bash\n",
        )
        .unwrap();
        let listeners = baseline::scan_listeners_in(&proc_root).expect("scan the fake /proc");
        let policy = Policy::embedded_default();
        let mut table = ProcessTable::new(100, &proc_root);
        table.set_programs(policy.programs(), Catalog::default());
        table.seed().expect("seed");
        let mut enricher = Enricher::new(
            "web1".into(),
            UserNames::new(dir.path().join("passwd")),
            Clock::with_offset(0),
        );
        enricher.set_web_server_users(policy.web_server_users.clone());
        (listeners, table, enricher)
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn judges_every_namespace_like_the_start_up_baseline() {
        let dir = TempDir::new();
        let (listeners, mut table, mut enricher) = fake_host(&dir);
        let policy = Policy::embedded_default();
        let mut out = Output::new(Vec::new());
        let summary = judge(&listeners, &policy, &mut table, &mut enricher, &mut out).unwrap();
        assert_eq!(
            summary,
            Summary {
                listeners: 3,
                namespaces: 2,
                alerts: 2
            }
        );
        let alerts = lines(&out);
        let ports: Vec<&Value> = alerts
            .iter()
            .map(|a| &a["socket"]["local"]["port"])
            .collect();
        assert_eq!(ports, [4444, 8080], "the loopback listener is allowed");
        for a in &alerts {
            assert_eq!(a["type"], "alert");
            assert_eq!(a["rule"], "unexpected_listen");
            assert_eq!(a["pre_existing"], true);
            assert_eq!(a["host"], "web1");
            assert_eq!(a["events_lost"], 0);
        }
        assert_eq!(alerts[0]["process"]["pid"], 40);
        assert_eq!(alerts[0]["process"]["exe"], "/usr/bin/socat");
        assert_eq!(alerts[0]["process"]["user"], "alice");
        assert_eq!(alerts[0]["ancestry"][0]["pid"], 1);
        assert_eq!(alerts[0]["title"], "Unexpected Port Opened: 4444");
        assert_eq!(alerts[1]["process"]["pid"], 50);
        assert_eq!(alerts[1]["socket"]["family"], "ipv6");
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn the_policy_decides_and_dedup_applies() {
        let dir = TempDir::new();
        let (listeners, mut table, mut enricher) = fake_host(&dir);
        // 4444 allowed for socat only, 8080 for anybody, loopback no longer allowed.
        let policy = Policy::from_toml_str(
            r#"
[rules.unexpected_listen]
allow_loopback = false
allow = [{ port = 4444, exe = "socat" }, { port = 8080 }]
"#,
            "audit.toml",
        )
        .unwrap();
        let mut out = Output::new(Vec::new());
        let summary = judge(&listeners, &policy, &mut table, &mut enricher, &mut out).unwrap();
        assert_eq!(summary.alerts, 1);
        assert_eq!(lines(&out)[0]["socket"]["local"]["port"], 5000);

        // Everything allowed: no alert, nothing printed.
        let policy = Policy::from_toml_str(
            "[rules.unexpected_listen]\nallow = [{ ports = \"1-65535\" }]\n",
            "all.toml",
        )
        .unwrap();
        let mut out = Output::new(Vec::new());
        let summary = judge(&listeners, &policy, &mut table, &mut enricher, &mut out).unwrap();
        assert_eq!((summary.listeners, summary.alerts), (3, 0));
        assert!(out.get_ref().is_empty());

        // The same program on the same port twice (IPv4 and IPv6): one alert, as live.
        let mut twice = listeners.clone();
        twice.push(ListeningSocket {
            inode: 7004,
            family_v6: true,
            local: "[::]:4444".parse().unwrap(),
            ..listeners[0].clone()
        });
        let mut out = Output::new(Vec::new());
        let summary = judge(
            &twice,
            &Policy::embedded_default(),
            &mut table,
            &mut enricher,
            &mut out,
        )
        .unwrap();
        assert_eq!((summary.listeners, summary.alerts), (4, 2));
    }

    #[test]
    fn exit_codes_and_a_closed_stdout() {
        let dir = TempDir::new();
        let (listeners, mut table, mut enricher) = fake_host(&dir);
        let policy = Policy::embedded_default();
        let mut out = Output::new(Vec::new());
        let summary = judge(&listeners, &policy, &mut table, &mut enricher, &mut out).unwrap();
        assert_eq!(summary.exit_code(), EXIT_ALERTS);
        assert_eq!(Summary::default().exit_code(), 0);

        /// A reader that went away (`monitor audit | head -c0`).
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
        }
        let mut out = Output::new(Closed);
        let err = judge(&listeners, &policy, &mut table, &mut enricher, &mut out).unwrap_err();
        assert!(
            matches!(err, AuditError::Output(OutputError::Closed)),
            "{err}"
        );
    }

    /// The live host: a listener this test opens on an odd loopback port is found and judged,
    /// with this process as its owner (no root needed: it is our own socket).
    #[test]
    fn audits_the_live_host() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let strict = Policy::from_toml_str(
            "[rules.unexpected_listen]\nallow_loopback = false\nallow = []\n",
            "strict.toml",
        )
        .unwrap();
        let mut out = Output::new(Vec::new());
        let summary = run(&strict, None, &mut out).expect("audit");
        assert!(summary.alerts >= 1 && summary.namespaces >= 1);
        let alerts = lines(&out);
        let ours = alerts
            .iter()
            .find(|a| a["socket"]["local"]["port"] == port)
            .unwrap_or_else(|| panic!("no alert for 127.0.0.1:{port} in {alerts:#?}"));
        assert_eq!(ours["process"]["pid"], std::process::id());
        let exe = std::env::current_exe().unwrap();
        assert_eq!(ours["process"]["exe"], exe.to_str().unwrap());

        // The default policy allows loopback listeners: ours raises nothing.
        let mut out = Output::new(Vec::new());
        run(&Policy::embedded_default(), None, &mut out).expect("audit");
        assert!(
            !lines(&out)
                .iter()
                .any(|a| a["socket"]["local"]["port"] == port)
        );
    }
}
