//! SIGHUP: the policy file and the list files are read again and swapped in as a whole, or not at
//! all. Everything new is read and validated first ([`prepare`]); only then is any of it applied
//! ([`apply`]), between two ring-buffer batches of the daemon's one loop, so no event is lost and
//! none is judged half by the old and half by the new policy. A bad file is refused with a
//! `reloaded` status record naming file, line and key, and the old policy keeps running.
//!
//! What a policy reaches, and so what [`apply`] sets again: the rules and dedup window
//! ([`crate::detect::Detector`]), the program lists of the process table and its identity catalog
//! (each process judged again), the web servers' users (enrichment, and the kernel's `WEB_UIDS`),
//! the SSH servers (the kernel's watched executables), the processes under a web server (the
//! kernel's web tree), whether loopback listens stay in the kernel (`SCOPE`), and the list files
//! (records' enrichment and the kernel's `WATCHED_NETS`). Options of the command line
//! (`--ring-buffer-bytes`, `--events`, `--format`, `--output`, `--metrics`) are not the policy's and
//! stay as started.

use std::{
    collections::BTreeSet,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use log::{info, warn};
use monitor_common::EXE_SSH_SERVER;

use crate::{
    clock, host,
    identity::Catalog,
    iplist::{IpLists, ReloadReport},
    login,
    output::{OutputError, Sink},
    pipeline::{self, Pipeline},
    policy::{Policy, PolicyError},
    probes::Watch,
    process_table::ProcessTable,
    record::{Record, ReloadError, ReloadInfo, Status},
    trust::Trust,
};

/// Where the policy comes from, and which files are believed.
#[derive(Clone, Debug)]
pub struct Source {
    /// `--policy FILE`; `None`: the embedded default (only its list files are re-read).
    pub policy: Option<PathBuf>,
    pub trust: Trust,
}

/// A new configuration, read and validated, not applied yet.
pub struct Prepared {
    policy: Policy,
    lists: NewLists,
}

/// What a reload does to the list files.
enum NewLists {
    /// `[enrichment]` is unchanged: re-read the files that changed on disk.
    Same,
    /// `[enrichment]` changed and names no list any more.
    None,
    /// `[enrichment]` changed: these, read in full.
    Loaded(IpLists, ReloadReport),
}

/// Reads the policy file again and, when its `[enrichment]` changed, every list file it names.
/// Nothing is applied: an error leaves everything as it was.
pub fn prepare(source: &Source, current: &Policy) -> Result<Prepared, ReloadError> {
    let policy = match &source.policy {
        Some(path) => Policy::from_trusted_file(path, source.trust).map_err(policy_error)?,
        None => current.clone(),
    };
    let lists = if policy.enrichment == current.enrichment {
        NewLists::Same
    } else if policy.enrichment.is_empty() {
        NewLists::None
    } else {
        let (lists, report) = IpLists::load(&policy.enrichment.lists_config(source.trust))
            .map_err(|e| list_error(&e))?;
        NewLists::Loaded(lists, report)
    };
    Ok(Prepared { policy, lists })
}

fn policy_error(e: PolicyError) -> ReloadError {
    let message = e.to_string();
    match e {
        PolicyError::Invalid {
            file,
            position,
            key,
            ..
        } => ReloadError {
            file,
            line: position.map(|(line, _)| line),
            column: position.map(|(_, column)| column),
            key,
            message,
        },
        PolicyError::Read { path, .. } | PolicyError::Untrusted { path, .. } => ReloadError {
            file: path,
            line: None,
            column: None,
            key: None,
            message,
        },
    }
}

fn list_error(e: &crate::iplist::IpListError) -> ReloadError {
    let file = match e {
        crate::iplist::IpListError::Read { path, .. }
        | crate::iplist::IpListError::EmptyName { path } => path.display().to_string(),
        crate::iplist::IpListError::DuplicateName { .. } => String::new(),
    };
    ReloadError {
        file,
        line: None,
        column: None,
        key: Some("enrichment".to_owned()),
        message: format!("enrichment: {e}"),
    }
}

/// What [`apply`] did.
pub struct Applied {
    /// The list files now configured (the daemon watches their directories).
    pub list_paths: Vec<PathBuf>,
    pub info: ReloadInfo,
}

/// Swaps a prepared configuration in: every stage and kernel map that depends on the policy
/// follows it. List files are re-read when `[enrichment]` is unchanged too (only those that
/// changed on disk; a bad one keeps its last good copy, as between reloads).
pub fn apply<S: Sink>(p: &mut Pipeline<S>, prepared: Prepared) -> Applied {
    let Prepared { policy, lists } = prepared;
    let old = Arc::clone(p.detector.policy());
    let mut changed = changed_keys(&old, &policy);
    if policy.programs() != old.programs() {
        let programs = policy.programs();
        let catalog = Catalog::resolve(&programs.lists());
        info!(
            "reload: program lists changed, {} of the host's programs catalogued again",
            catalog.stats().catalogued
        );
        p.table.set_programs(programs, catalog);
    }
    p.enricher
        .set_web_server_users(policy.web_server_users.clone());
    p.login_config = policy.logins.clone();
    if let Some(watch) = p.watch.as_mut() {
        watch_ssh_servers(watch, &policy.logins, &p.table);
        let listen = &policy.rules.unexpected_listen;
        if let Err(e) =
            watch.skip_loopback_listens(listen.settings.enabled && listen.allow_loopback)
        {
            warn!("reload: cannot tell the kernel which listens to keep: {e}");
        }
    }
    if policy.programs() != old.programs() || policy.web_server_users != old.web_server_users {
        mark_web_trees(p, &policy.web_server_users);
    }
    let report = match lists {
        NewLists::Loaded(lists, report) => {
            p.serve_lists(lists, &report);
            report
        }
        NewLists::None => {
            p.lists = None;
            p.board.lists.clear();
            if let Some(watch) = p.watch.as_mut()
                && let Err(e) = watch.set_nets(std::iter::empty())
            {
                warn!("reload: cannot clear the kernel's watched prefixes: {e}");
            }
            p.enricher.set_lists(Arc::default());
            ReloadReport::default()
        }
        NewLists::Same => match p.lists.take() {
            Some(mut current) => {
                let report = current.reload_changed();
                if report.rebuilt {
                    p.use_database(&current);
                }
                p.lists = Some(current);
                pipeline::log_lists(&report);
                p.board.lists_read(&report, &clock::now_rfc3339());
                report
            }
            None => ReloadReport::default(),
        },
    };
    for key in pipeline::lists_changed(&report) {
        if !changed.contains(&key) {
            changed.push(key);
        }
    }
    p.detector.set_policy(Arc::new(policy));
    p.board.policy_reloads += 1;
    let list_paths = p.lists.as_ref().map(IpLists::paths).unwrap_or_default();
    Applied {
        list_paths,
        info: ReloadInfo {
            trigger: "sighup",
            accepted: true,
            changed,
            error: None,
        },
    }
}

/// SIGHUP: [`prepare`], then [`apply`] or refuse, and the `reloaded` record saying which. Returns
/// the list files now configured when the reload was taken.
pub fn on_sighup<S: Sink>(
    p: &mut Pipeline<S>,
    source: &Source,
) -> Result<Option<Vec<PathBuf>>, OutputError> {
    let current = Arc::clone(p.detector.policy());
    let (info, paths) = match prepare(source, &current) {
        Ok(prepared) => {
            let applied = apply(p, prepared);
            info!(
                "SIGHUP: reloaded; changed: {}",
                if applied.info.changed.is_empty() {
                    "nothing".to_owned()
                } else {
                    applied.info.changed.join(", ")
                }
            );
            (applied.info, Some(applied.list_paths))
        }
        Err(error) => {
            warn!(
                "SIGHUP: reload refused, the running policy stays: {}",
                error.message
            );
            p.board.policy_reloads_refused += 1;
            let info = ReloadInfo {
                trigger: "sighup",
                accepted: false,
                changed: Vec::new(),
                error: Some(error),
            };
            (info, None)
        }
    };
    let record = p.status_with(Status::Reloaded, None, Some(info));
    p.out.write(&Record::Status(record))?;
    p.out.flush()?;
    Ok(paths)
}

/// The policy's keys whose values differ, from the effective policies (`rules.<rule>`,
/// `logins.<key>`, `enrichment.<key>` one level down).
pub fn changed_keys(old: &Policy, new: &Policy) -> Vec<String> {
    let table =
        |p: &Policy| -> toml::Table { toml::from_str(&p.to_effective_toml()).unwrap_or_default() };
    let (old, new) = (table(old), table(new));
    let mut changed = Vec::new();
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        match (old.get(key), new.get(key)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                let inner: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                for k in inner {
                    if a.get(k) != b.get(k) {
                        changed.push(format!("{key}.{k}"));
                    }
                }
            }
            (a, b) if a != b => changed.push(key.clone()),
            _ => {}
        }
    }
    changed
}

/// Tells the kernel side which processes are under a web server now (the kernel hands the mark
/// down at fork from here on), and which uids are web servers' users, so that their UDP
/// destinations reach userspace and nobody else's do.
pub fn mark_web_trees<S: Sink>(p: &mut Pipeline<S>, users: &[String]) {
    let mut marked = 0;
    for pid in p.table.pids() {
        if p.table.under_web_server(pid) {
            p.mark_web_tree(pid);
            marked += 1;
        }
    }
    let by_uid = std::fs::read_to_string("/etc/passwd")
        .map(|text| host::parse_passwd(&text))
        .unwrap_or_default();
    let uids: Vec<u32> = by_uid
        .iter()
        .filter(|(_, name)| users.contains(name))
        .map(|(uid, _)| *uid)
        .collect();
    if let Some(watch) = p.watch.as_mut()
        && let Err(e) = watch.set_web_uids(&uids)
    {
        warn!("cannot tell the kernel the web servers' users: {e}");
    }
    info!(
        "{marked} processes under a web server and {} web server users watched for UDP egress",
        uids.len()
    );
}

/// Tells the kernel side which executables are SSH servers: the policy's paths as they are on
/// disk now, and whatever running processes execute under those paths (a binary replaced by an
/// upgrade keeps running from its old inode). New ones are added at their exec.
pub fn watch_ssh_servers(watch: &mut Watch, config: &login::Config, table: &ProcessTable) {
    let mut inodes = BTreeSet::new();
    for pattern in &config.ssh_servers {
        match glob::glob(pattern.as_str()) {
            Ok(paths) => {
                for path in paths.flatten() {
                    if let Ok(m) = std::fs::metadata(&path) {
                        inodes.insert(m.ino());
                    }
                }
            }
            Err(e) => warn!("{}: {e}", pattern.as_str()),
        }
    }
    for pid in table.pids() {
        let exe = table.get(pid).and_then(|e| e.exe.as_deref());
        if config.is_ssh_server(exe)
            && let Some(ino) = table.procfs().exe_inode(pid)
        {
            inodes.insert(ino);
        }
    }
    for ino in inodes {
        if let Err(e) = watch.watch_exe(ino, EXE_SSH_SERVER) {
            warn!("cannot watch an SSH server executable (inode {ino}): {e}");
        }
    }
}

/// The policy file of `source`, for log lines.
pub fn describe(source: &Source) -> String {
    source.policy.as_deref().map_or_else(
        || "embedded default".to_owned(),
        |p: &Path| p.display().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> Policy {
        Policy::from_toml_str(text, "policy.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn changed_keys_name_rules_and_shared_keys() {
        let old = Policy::embedded_default();
        let new = policy(
            "dedup_window = \"5m\"\n\
             [rules.unexpected_listen]\nallow_loopback = false\n",
        );
        assert_eq!(
            changed_keys(&old, &new),
            ["dedup_window", "rules.unexpected_listen"]
        );
        assert!(changed_keys(&old, &old.clone()).is_empty());
    }

    #[test]
    fn a_bad_policy_is_refused_with_file_line_and_key() {
        let dir = crate::testing::TempDir::new();
        let path = dir.path().join("policy.toml");
        std::fs::write(
            &path,
            "[rules.unexpected_listen]\nallow_loopback = true\nallow = [{ port = 70000 }]\n",
        )
        .unwrap();
        let source = Source {
            policy: Some(path.clone()),
            trust: Trust::Any,
        };
        let Err(e) = prepare(&source, &Policy::embedded_default()) else {
            panic!("a port out of range was taken");
        };
        assert_eq!(e.file, path.display().to_string());
        assert_eq!(e.line, Some(3));
        assert_eq!(
            e.key.as_deref(),
            Some("rules.unexpected_listen.allow[0].port")
        );
        assert!(e.message.contains("70000"), "{}", e.message);
    }

    #[test]
    fn an_untrusted_policy_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = crate::testing::TempDir::new();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "dedup_window = \"5m\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let source = Source {
            policy: Some(path.clone()),
            trust: Trust::OwnerOnly,
        };
        let Err(e) = prepare(&source, &Policy::embedded_default()) else {
            panic!("a policy anyone can write was taken");
        };
        assert!(
            e.message.contains("writable by its group or by others"),
            "{}",
            e.message
        );
        let source = Source {
            trust: Trust::Any,
            ..source
        };
        assert!(prepare(&source, &Policy::embedded_default()).is_ok());
    }

    /// A pipeline over a synthetic /proc: pid 1 and `/opt/app/server` (pid 100) with a child.
    fn pipeline(dir: &crate::testing::TempDir) -> Pipeline<Vec<u8>> {
        use crate::{
            clock::Clock, detect::Detector, enrich::Enricher, host::UserNames, login::Logins,
            output::Output, probes::Counters, status,
        };
        let proc_root = dir.path().join("proc");
        crate::testing::fake_proc(&proc_root, 1, 0, "init", Some("/sbin/init"), &["init"], 1);
        crate::testing::fake_proc(
            &proc_root,
            100,
            1,
            "server",
            Some("/opt/app/server"),
            &["/opt/app/server"],
            2,
        );
        crate::testing::fake_proc(
            &proc_root,
            200,
            100,
            "worker",
            Some("/opt/app/worker"),
            &["w"],
            3,
        );
        let policy = Policy::embedded_default();
        let mut table = ProcessTable::new(100, proc_root);
        table.set_programs(policy.programs(), Catalog::default());
        table.seed().unwrap();
        Pipeline {
            print_events: false,
            table,
            enricher: Enricher::new(
                "web1".into(),
                UserNames::new(dir.path().join("passwd")),
                Clock::with_offset(0),
            ),
            login_config: policy.logins.clone(),
            detector: Detector::new(Arc::new(policy)),
            out: Output::new(Vec::new()),
            board: status::Board::default(),
            counters: Counters::default(),
            logins: Logins::new(),
            watch: None,
            lists: None,
            newest_lineage_ns: 0,
        }
    }

    #[test]
    fn a_reload_reaches_the_table_the_rules_and_the_lists() {
        let dir = crate::testing::TempDir::new();
        let mut p = pipeline(&dir);
        assert!(!p.table.under_web_server(200));
        let list = dir.path().join("tor.txt");
        std::fs::write(&list, "198.51.100.7\n").unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(
            &path,
            format!(
                "web_servers = [\"/opt/app/server\"]\n\
                 [enrichment]\ntor_exits = \"{}\"\n\
                 [rules.unexpected_listen]\nenabled = false\n",
                list.display()
            ),
        )
        .unwrap();
        let source = Source {
            policy: Some(path),
            trust: Trust::Any,
        };
        let current = Arc::clone(p.detector.policy());
        let prepared = prepare(&source, &current).unwrap_or_else(|e| panic!("{}", e.message));
        let applied = apply(&mut p, prepared);
        assert_eq!(
            applied.info.changed,
            [
                "enrichment.tor_exits",
                "rules.unexpected_listen",
                "web_servers",
            ]
        );
        assert!(applied.info.accepted);
        assert_eq!(applied.list_paths, [list]);
        // The table judged its processes again: the child of the new web server is under it.
        assert!(p.table.under_web_server(200));
        assert!(!p.detector.policy().rules.unexpected_listen.settings.enabled);
        // Records are enriched from the new list.
        let hit = p.enricher.address("198.51.100.7".parse().unwrap());
        assert!(hit.tor_exit, "{hit:?}");
        assert_eq!(p.board.policy_reloads, 1);
        assert_eq!(p.board.lists.len(), 1);

        // Back to the default, which has no list: the enrichment is emptied.
        let back = Prepared {
            policy: Policy::embedded_default(),
            lists: NewLists::None,
        };
        let applied = apply(&mut p, back);
        assert!(applied.list_paths.is_empty());
        assert!(!p.enricher.address("198.51.100.7".parse().unwrap()).tor_exit);
        assert!(p.board.lists.is_empty());
        assert!(!p.table.under_web_server(200));
    }
}
