//! Who is who: thread-group id → identity (exe, argv, comm, ids) and lineage.
//!
//! Seeded from `/proc` at start so that processes older than the monitor (an nginx started before
//! it) are known with their exe and argv, then kept by the kernel's fork / exec / exit events. A pid
//! the table has never seen is read from `/proc` once (lazily), which covers events lost to a full
//! ring buffer and the race between seeding and the first events.
//!
//! Exited processes stay for a grace period ([`EXIT_GRACE_NS`] of kernel time): a child whose
//! parent already exited (a shell that ran `nohup x &`, a double-forking daemon) must still show
//! that parent in its ancestry when its own events are processed.
//!
//! Every entry also carries the nearest web server of its lineage ([`ProcessEntry::web_server`]),
//! handed down at fork and kept across exec and exits, so "under a web server" holds at any depth,
//! after the intermediate processes are gone, after reparenting to init, and for a web server
//! that replaced itself with another program. What counts as a web server is the policy's
//! `web_servers` list ([`ProcessTable::set_web_servers`]), matched by
//! [`crate::matcher::program_path`] like everywhere else; which web server an event is under is
//! then the enrich stage's call ([`crate::enrich::lineage`]), from the record this table fills.
//!
//! Time inside the table is the kernel's `CLOCK_BOOTTIME` (event `ktime_ns`; `/proc/<pid>/stat`
//! start times use the same base), which makes expiry deterministic and testable.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::PathBuf,
    sync::Arc,
};

use crate::{
    decode::{Exec, FileId, Origin},
    identity::{self, Catalog, Class, Classes, IdentityStats, Programs as TablePrograms},
    matcher::{ExeGlob, program_path},
    procfs::{ProcError, ProcFs, ProcProcess},
    record::{
        ANCESTRY_MAX, Ancestor, Ancestry, MatchKind, ProgramIdentity, TableStats, ToolInfo,
        ToolKind, WebServerInfo,
    },
};

/// Default bound on the number of entries.
pub const DEFAULT_CAPACITY: usize = 65_536;
/// How long (kernel nanoseconds) an exited process stays resolvable.
pub const EXIT_GRACE_NS: u64 = 30_000_000_000;
/// A parent that started later than its child by more than this is a reused pid, not the parent
/// (covers `/proc` start times being rounded down to clock ticks).
const START_SLACK_NS: u64 = 50_000_000;
/// (web server, shell / tool classes, dynamic loader), by path.
type PathVerdict = (bool, Classes, bool);
/// Path verdicts remembered before the memo is reset.
const PATH_VERDICTS_MAX: usize = 4096;
/// Negative lookups remembered before the set is reset.
const FAILED_LOOKUPS_MAX: usize = 4096;

/// What the table knows about one process.
#[derive(Clone, Debug, PartialEq, Eq)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "independent facts about one process, not a state machine"
)]
pub struct ProcessEntry {
    pub pid: u32,
    /// The parent at fork time (or as last reported by an exec event); kept after the parent
    /// exits so that lineage survives reparenting to init.
    pub ppid: u32,
    /// Real uid and gid.
    pub uid: u32,
    pub gid: u32,
    /// Effective uid: from `/proc`, the last exec or uid change the kernel reported (a setuid
    /// program's is set at exec), or the parent's at fork; `None` when nothing said.
    pub euid: Option<u32>,
    pub comm: String,
    pub exe: Option<String>,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    /// The path the last exec ran (`/usr/bin/gunicorn` for a script whose exe is the
    /// interpreter); copied at fork; `None` when no exec was seen.
    pub filename: Option<String>,
    /// The nearest web server among the programs this process ran before its current one
    /// (depth 0) and its ancestors, at any depth; the current program is not included (see
    /// [`ProcessTable::web_server`]). Meaningful once resolved. Shared: every process under
    /// one web server holds the same value.
    pub web_server: Option<Arc<WebServerInfo>>,
    /// `web_server` is known: set from the parent at fork / the previous program at exec, or
    /// computed by walking the parent chain (entries read from `/proc`).
    lineage_resolved: bool,
    /// The web-server verdict on the current program (exe, exec filename), taken when the
    /// entry is stored: events ask for it on every record, and the program only changes at exec.
    runs_web_server: bool,
    /// `argv` was copied from the parent at fork and not read since: a forked server child often
    /// rewrites its title (`php-fpm: pool www`, `nginx: worker process`), so the first lookup
    /// re-reads `/proc/<pid>/cmdline` once.
    pub argv_inherited: bool,
    /// cgroup v2 id, when an event reported it (`None` for processes only seen in `/proc`).
    pub cgroup_id: Option<u64>,
    /// Start time, `CLOCK_BOOTTIME` ns (fork event time, or `/proc/<pid>/stat` starttime).
    pub start_ns: Option<u64>,
    /// Exit time, `CLOCK_BOOTTIME` ns, while in the grace period.
    pub exited_ns: Option<u64>,
    /// Logical time of the last use, for least-recently-used eviction.
    last_used: u64,
    /// Set from the table's counter whenever the entry is added or what an ancestry shows of it
    /// (exe, comm, argv, parent) changes: a cached ancestry is valid while its members' stamps
    /// are.
    stamp: u64,
    /// The executable's inode identity, from the exec record (copied at fork).
    pub file: Option<FileId>,
    /// What the current program was recognised as beyond its path (a copy of a shell, a
    /// loader running one); taken with `runs_web_server`.
    pub program: Option<ProgramIdentity>,
    /// How the current program was recognised as a web server (`runs_web_server`).
    web_server_match: Option<MatchKind>,
    /// The current program as a shell or egress tool, when it is one.
    own_tool: Option<Arc<ToolInfo>>,
    /// The nearest shell or egress tool at or above this process and below its nearest web
    /// server (meaningful once `lineage_resolved`).
    pub tool: Option<Arc<ToolInfo>>,
    /// `runs_web_server`, `program` and `own_tool` are set (inherited at fork, or judged).
    judged: bool,
}

impl ProcessEntry {
    /// A process read from `/proc` (or, when `/proc` no longer has it, described by an event):
    /// its lineage is resolved on first use.
    pub fn from_proc(p: ProcProcess) -> Self {
        Self {
            pid: p.pid,
            ppid: p.ppid,
            uid: p.uid,
            gid: p.gid,
            euid: p.euid,
            comm: p.comm,
            exe: p.exe,
            argv: p.argv,
            argv_truncated: p.argv_truncated,
            filename: None,
            web_server: None,
            lineage_resolved: false,
            runs_web_server: false,
            argv_inherited: false,
            cgroup_id: None,
            start_ns: p.start_ns,
            exited_ns: None,
            last_used: 0,
            stamp: 0,
            file: None,
            program: None,
            web_server_match: None,
            own_tool: None,
            tool: None,
            judged: false,
        }
    }

    pub fn ancestor(&self) -> Ancestor {
        Ancestor {
            pid: self.pid,
            exe: self.exe.clone(),
            comm: self.comm.clone(),
            argv: self.argv.clone(),
        }
    }

    fn apply(&mut self, j: Judged) {
        self.runs_web_server = j.web_server.is_some();
        self.web_server_match = j.web_server;
        self.program = j.program;
        self.own_tool = j.tool;
        self.judged = true;
    }

    /// This process as a `web_server` value.
    pub fn web_server_info(&self) -> WebServerInfo {
        WebServerInfo {
            pid: self.pid,
            exe: self.exe.clone(),
            filename: self.filename.clone(),
            comm: self.comm.clone(),
            argv: self.argv.clone(),
            matched: self.web_server_match.filter(|m| *m != MatchKind::Path),
        }
    }
}

/// The verdicts on one program.
struct Judged {
    web_server: Option<MatchKind>,
    program: Option<ProgramIdentity>,
    tool: Option<Arc<ToolInfo>>,
}

pub struct ProcessTable {
    entries: HashMap<u32, ProcessEntry>,
    /// (pid, exit time) in exit order; items whose entry was replaced since are skipped.
    exited: VecDeque<(u32, u64)>,
    capacity: usize,
    evicted: u64,
    tick: u64,
    proc: ProcFs,
    failed: HashSet<u32>,
    /// The policy's program lists (empty: no program is a web server, shell or tool).
    programs: TablePrograms,
    /// The host's binaries those lists name, by file and content.
    catalog: Catalog,
    /// `/proc/sys/kernel/random/boot_id`: incident ids differ across boots.
    boot_id: String,
    /// exe → exec filename → (web server, classes, loader) by path (`""` for an unknown one).
    path_verdicts: HashMap<String, HashMap<String, PathVerdict>>,
    /// (kind, root pid, root start) → incident id.
    incidents: HashMap<(String, u32, u64), String>,
    /// The last stamp handed out (see `ProcessEntry::stamp`).
    stamp: u64,
    /// Ancestries built, by the pid of their first member (the parent of the processes they
    /// belong to): every child of a parent shares one, so a burst of children (an exec storm, a
    /// shell script, a web server's workers) builds it once. At most [`ANCESTRY_CACHE_MAX`]:
    /// not one per entry, as every process would then hold its own copy of every ancestor's
    /// command line.
    ancestries: HashMap<u32, CachedAncestry>,
}

/// An ancestry as built, with what it was built from.
struct CachedAncestry {
    /// Each member's pid and stamp then.
    members: Vec<(u32, u64)>,
    /// The pid the chain stopped at because the table did not know it (then or on reading
    /// `/proc`): the ancestry is stale once the table has it.
    unknown: Option<u32>,
    ancestry: Ancestry,
}

const ANCESTRY_CACHE_MAX: usize = 64;

impl ProcessTable {
    /// An empty table reading `/proc`-like data from `proc_root` (`/proc` in the daemon).
    pub fn new(capacity: usize, proc_root: impl Into<PathBuf>) -> Self {
        Self {
            entries: HashMap::new(),
            exited: VecDeque::new(),
            capacity: capacity.max(1),
            evicted: 0,
            tick: 0,
            proc: ProcFs::new(proc_root),
            failed: HashSet::new(),
            programs: TablePrograms::default(),
            catalog: Catalog::default(),
            boot_id: String::new(),
            path_verdicts: HashMap::new(),
            incidents: HashMap::new(),
            stamp: 0,
            ancestries: HashMap::new(),
        }
    }

    /// Which programs are web servers: the policy's `web_servers`. Set it before
    /// [`ProcessTable::seed`] and the first events: values already handed down are not
    /// recomputed.
    pub fn set_web_servers(&mut self, web_servers: Vec<ExeGlob>) {
        let mut programs = self.programs.clone();
        programs.web_servers = web_servers;
        self.set_programs(programs, Catalog::default());
    }

    /// Which programs are web servers, shells and egress tools: the policy's lists, and the
    /// host's binaries they name ([`Catalog::resolve`]). Set before [`ProcessTable::seed`] and
    /// the first events; on a reload every entry is judged again.
    pub fn set_programs(&mut self, programs: TablePrograms, catalog: Catalog) {
        self.programs = programs;
        self.catalog = catalog;
        self.path_verdicts.clear();
        if self.boot_id.is_empty() {
            self.boot_id =
                std::fs::read_to_string(self.proc.root().join("sys/kernel/random/boot_id"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default();
        }
        let pids: Vec<u32> = self.entries.keys().copied().collect();
        for pid in pids {
            let Some(e) = self.entries.get(&pid) else {
                continue;
            };
            let (exe, filename, argv, file) =
                (e.exe.clone(), e.filename.clone(), e.argv.clone(), e.file);
            let judged = self.judge(pid, exe.as_deref(), filename.as_deref(), &argv, file);
            if let Some(e) = self.entries.get_mut(&pid) {
                e.apply(judged);
                e.lineage_resolved = false;
                e.web_server = None;
                e.tool = None;
            }
        }
    }

    /// Resolves the catalog again when a catalogued binary, a program directory or a shell list
    /// changed (a package upgrade): verdicts from then on use the new files. Returns whether it
    /// did.
    pub fn refresh_catalog(&mut self) -> bool {
        if !self.catalog.changed() {
            return false;
        }
        self.catalog = Catalog::resolve(&self.programs.lists());
        true
    }

    pub fn identity_stats(&self) -> IdentityStats {
        self.catalog.stats()
    }

    /// Judges the program a process runs: by path (the policy's globs, on the executable, the
    /// exec's filename, and the program a loader runs), then by file and content.
    fn judge(
        &mut self,
        pid: u32,
        exe: Option<&str>,
        filename: Option<&str>,
        argv: &[String],
        file: Option<FileId>,
    ) -> Judged {
        let (web_by_path, by_path, loader) = self.path_verdict(exe, filename);
        let lists = self.programs.lists();
        let mut program = ProgramIdentity::default();
        let mut shell = None;
        let mut tool = None;
        let mut web = web_by_path.then_some(MatchKind::Path);
        let loaded = loader
            .then(|| identity::loaded_program(argv))
            .flatten()
            .map(str::to_owned);
        if by_path.has(Class::Shell) {
            shell = Some(MatchKind::Path);
        }
        if by_path.has(Class::EgressTool) {
            tool = Some(MatchKind::Path);
        }
        let verdict = if let Some(loaded) = &loaded {
            program.loaded = Some(loaded.clone());
            let c = lists.classes_by_path(loaded);
            if c.has(Class::Shell) {
                shell = Some(MatchKind::Loader);
            }
            if c.has(Class::EgressTool) {
                tool = Some(MatchKind::Loader);
            }
            if c.has(Class::WebServer) {
                web = Some(MatchKind::Loader);
            }
            // A relative path is the process's working directory's.
            let path = if loaded.starts_with('/') {
                std::path::PathBuf::from(loaded)
            } else {
                self.proc.path(pid, "cwd").join(loaded)
            };
            self.catalog
                .judge_path(&self.proc, pid, &path)
                .map(|mut v| {
                    v.matched = MatchKind::Loader;
                    v
                })
        } else {
            let file = file.or_else(|| {
                std::fs::metadata(self.proc.path(pid, "exe"))
                    .ok()
                    .map(|m| identity::file_id(&m))
            });
            file.and_then(|f| self.catalog.judge(&self.proc, pid, exe, &f))
        };
        if let Some(v) = verdict {
            if v.classes.has(Class::Shell) && shell.is_none() {
                shell = Some(v.matched);
                program.shell = Some(v.matched);
            }
            if v.classes.has(Class::EgressTool) && tool.is_none() {
                tool = Some(v.matched);
                program.egress_tool = Some(v.matched);
            }
            if v.classes.has(Class::WebServer) && web.is_none() {
                web = Some(v.matched);
                program.web_server = Some(v.matched);
            }
            if !program.is_empty() {
                program.same_as = Some(v.same_as);
            }
        }
        if shell == Some(MatchKind::Loader) {
            program.shell = shell;
        }
        if tool == Some(MatchKind::Loader) {
            program.egress_tool = tool;
        }
        if web == Some(MatchKind::Loader) {
            program.web_server = web;
        }
        let own_tool = match (shell, tool) {
            (Some(m), _) => Some((ToolKind::Shell, m)),
            (None, Some(m)) => Some((ToolKind::Tool, m)),
            (None, None) => None,
        };
        Judged {
            web_server: web,
            tool: own_tool.map(|(kind, matched)| {
                Arc::new(ToolInfo {
                    pid,
                    exe: loaded.clone().or_else(|| exe.map(str::to_owned)),
                    kind,
                    matched,
                })
            }),
            program: (!program.is_empty()).then_some(program),
        }
    }

    /// The path verdicts on (exe, exec filename), memoized: an exec storm runs the same few
    /// programs, and the globs are the costly part of judging one.
    fn path_verdict(&mut self, exe: Option<&str>, filename: Option<&str>) -> PathVerdict {
        // Looked up by &str: a hit (every exec of an already-seen program) allocates nothing.
        let (e, f) = (exe.unwrap_or_default(), filename.unwrap_or_default());
        if let Some(v) = self.path_verdicts.get(e).and_then(|by_file| by_file.get(f)) {
            return *v;
        }
        let web = program_path(&self.programs.web_servers, exe, filename).is_some();
        let classes = exe.map_or_else(Classes::default, |e| {
            self.programs.lists().classes_by_path(e)
        });
        let loader = exe.is_some_and(|e| identity::is_loader(&self.programs.loaders, e));
        if self.path_verdicts.len() >= PATH_VERDICTS_MAX {
            self.path_verdicts.clear();
        }
        self.path_verdicts
            .entry(e.to_owned())
            .or_default()
            .insert(f.to_owned(), (web, classes, loader));
        (web, classes, loader)
    }

    /// The id of the web-server process tree `pid` is under: its nearest web server, then that
    /// one's nearest, up to the outermost (php-fpm's master for every worker's shells), hashed
    /// with its start time and the boot id. `None` when no web server is in the lineage.
    pub fn incident(&mut self, pid: u32) -> Option<String> {
        let mut root = self.web_server(pid)?.pid;
        for _ in 0..64 {
            self.lookup(root);
            self.resolve_web_server(root);
            match self.get(root).and_then(|e| e.web_server.as_deref()) {
                Some(above) if above.pid != root => root = above.pid,
                _ => break,
            }
        }
        let start = self.get(root).and_then(|e| e.start_ns).unwrap_or(0);
        Some(self.incident_id("web", root, start))
    }

    /// The id of a tree of `uid`'s processes with no web server in their lineage: the oldest
    /// ancestor of `pid` still running as `uid`.
    pub fn user_incident(&mut self, pid: u32, uid: u32) -> String {
        let mut root = pid;
        let mut seen = HashSet::from([pid]);
        while let Some(ppid) = self.lookup(root).map(|e| e.ppid) {
            if ppid <= 1 || !seen.insert(ppid) {
                break;
            }
            match self.lookup(ppid) {
                Some(p) if p.uid == uid => root = ppid,
                _ => break,
            }
        }
        let start = self.get(root).and_then(|e| e.start_ns).unwrap_or(0);
        self.incident_id(&format!("user{uid}"), root, start)
    }

    /// Every record under a web server asks for its tree's id: hashed once per tree root.
    fn incident_id(&mut self, kind: &str, pid: u32, start_ns: u64) -> String {
        use sha2::{Digest as _, Sha256};
        let key = (kind.to_owned(), pid, start_ns);
        if let Some(id) = self.incidents.get(&key) {
            return id.clone();
        }
        let digest = Sha256::digest(format!("{}:{kind}:{pid}:{start_ns}", self.boot_id));
        let id = digest[..8]
            .iter()
            .fold(String::with_capacity(16), |mut out, b| {
                use std::fmt::Write as _;
                let _ = write!(out, "{b:02x}");
                out
            });
        if self.incidents.len() >= PATH_VERDICTS_MAX {
            self.incidents.clear();
        }
        self.incidents.insert(key, id.clone());
        id
    }

    /// Whether `pid` is, replaced, or descends from a web server (by lineage).
    /// Only for a pid the table knows: it never reads `/proc` for `pid` itself, so a child just
    /// forked keeps its one re-read of its title for later, when it has set it.
    pub fn under_web_server(&mut self, pid: u32) -> bool {
        if self.get(pid).is_none() {
            return false;
        }
        self.resolve_web_server(pid);
        self.get(pid)
            .is_some_and(|e| e.exited_ns.is_none() && (e.runs_web_server || e.web_server.is_some()))
    }

    /// The nearest shell or egress tool at or above `pid`, below its nearest web server.
    pub fn tool(&mut self, pid: u32) -> Option<ToolInfo> {
        self.lookup(pid)?;
        self.resolve_web_server(pid);
        self.get(pid)?.tool.as_deref().cloned()
    }

    /// The nearest web server of `pid`'s lineage, for the event record: the process itself when
    /// its current program is one, else [`ProcessEntry::web_server`].
    pub fn web_server(&mut self, pid: u32) -> Option<WebServerInfo> {
        self.lookup(pid)?;
        self.resolve_web_server(pid);
        let e = self.entries.get(&pid)?;
        if e.runs_web_server {
            return Some(e.web_server_info());
        }
        e.web_server.as_deref().cloned()
    }

    /// Computes `web_server` of an entry not resolved yet by walking its parent chain, uncapped
    /// and loop-safe: the first ancestor that is a web server, or the value of the first
    /// resolved one.
    fn resolve_web_server(&mut self, pid: u32) {
        let Some(e) = self.entries.get(&pid) else {
            return;
        };
        if e.lineage_resolved {
            return;
        }
        let mut cur = (e.ppid, e.start_ns);
        let mut seen = HashSet::from([pid]);
        let mut found = None;
        // The nearest shell or tool met below the web server, the process itself first.
        let mut tool = e.own_tool.clone();
        loop {
            let (ppid, child_start) = cur;
            if ppid == 0 || !seen.insert(ppid) || self.lookup(ppid).is_none() {
                break;
            }
            let Some(p) = self.entries.get(&ppid) else {
                break;
            };
            if let (Some(ps), Some(cs)) = (p.start_ns, child_start)
                && ps > cs.saturating_add(START_SLACK_NS)
            {
                break;
            }
            if p.runs_web_server {
                found = Some(Arc::new(p.web_server_info()));
                break;
            }
            if p.lineage_resolved {
                found.clone_from(&p.web_server);
                if tool.is_none() {
                    tool.clone_from(&p.tool);
                }
                break;
            }
            if tool.is_none() {
                tool.clone_from(&p.own_tool);
            }
            cur = (p.ppid, p.start_ns);
        }
        if let Some(e) = self.entries.get_mut(&pid) {
            e.web_server = found;
            e.tool = tool;
            e.lineage_resolved = true;
        }
    }

    /// Reads every process in `/proc`. Processes that vanish while being read are skipped.
    /// Returns how many were added.
    pub fn seed(&mut self) -> Result<usize, ProcError> {
        let pids = self.proc.pids()?;
        let mut n = 0;
        let mut seeded = Vec::new();
        for pid in pids {
            if let Some(p) = self.proc.read(pid) {
                self.insert(ProcessEntry::from_proc(p));
                seeded.push(pid);
                n += 1;
            }
        }
        // After all are in: a walk finds every ancestor without reading /proc again.
        for pid in seeded {
            self.resolve_web_server(pid);
        }
        Ok(n)
    }

    pub fn stats(&self) -> TableStats {
        TableStats {
            size: self.entries.len(),
            capacity: self.capacity,
            evicted: self.evicted,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every pid the table knows.
    pub fn pids(&self) -> Vec<u32> {
        self.entries.keys().copied().collect()
    }

    /// The `/proc` the table reads.
    pub fn procfs(&self) -> &ProcFs {
        &self.proc
    }

    /// The entry without touching `/proc`.
    pub fn get(&self, pid: u32) -> Option<&ProcessEntry> {
        self.entries.get(&pid)
    }

    /// The entry, read from `/proc` (once) when the table does not know `pid`.
    pub fn lookup(&mut self, pid: u32) -> Option<&ProcessEntry> {
        if pid == 0 {
            return None;
        }
        if !self.entries.contains_key(&pid) {
            if self.failed.contains(&pid) {
                return None;
            }
            if let Some(p) = self.proc.read(pid) {
                self.insert(ProcessEntry::from_proc(p));
            } else {
                if self.failed.len() >= FAILED_LOOKUPS_MAX {
                    self.failed.clear();
                }
                self.failed.insert(pid);
                return None;
            }
        }
        self.tick += 1;
        let tick = self.tick;
        let e = self.entries.get_mut(&pid)?;
        e.last_used = tick;
        if e.argv_inherited {
            e.argv_inherited = false;
            // Only while it runs: a pid whose exit we saw may already belong to someone else.
            // An empty read (the process is exiting, or a zombie) keeps the inherited argv.
            if e.exited_ns.is_none()
                && let Some((argv, truncated)) = self.proc.argv(pid)
                && !argv.is_empty()
            {
                e.argv = argv;
                e.argv_truncated = truncated;
                self.stamp += 1;
                e.stamp = self.stamp;
            }
        }
        Some(e)
    }

    /// The entry for the process an event came from: looked up (lazily from `/proc`), created from
    /// the header when `/proc` no longer has it, and refreshed with the header's cgroup id.
    pub fn for_event(&mut self, h: &Origin) -> &ProcessEntry {
        self.expire(h.ktime_ns);
        if self.lookup(h.tgid).is_none() {
            self.insert(ProcessEntry::from_proc(ProcProcess {
                pid: h.tgid,
                ppid: h.ppid,
                uid: h.uid,
                gid: h.gid,
                euid: h.euid,
                comm: h.comm.clone(),
                exe: None,
                argv: Vec::new(),
                argv_truncated: false,
                start_ns: None,
            }));
        }
        let e = self
            .entries
            .get_mut(&h.tgid)
            .expect("entry inserted or found above");
        e.cgroup_id = Some(h.cgroup_id);
        if e.ppid == 0 && h.ppid != 0 {
            e.ppid = h.ppid;
            self.stamp += 1;
            e.stamp = self.stamp;
        }
        if h.euid.is_some() {
            e.euid = h.euid;
        }
        e
    }

    /// `sched_process_fork`: the child inherits the parent's identity. Threads are ignored.
    /// Returns the new process's tgid (`None` for a thread).
    pub fn on_fork(&mut self, parent: &Origin, child_tid: u32, child_tgid: u32) -> Option<u32> {
        self.expire(parent.ktime_ns);
        let child = if child_tgid != 0 {
            if child_tgid != child_tid {
                return None; // a new thread of an existing process
            }
            child_tgid
        } else {
            // The kernel side could not read the tgid: ask /proc; if the task is already gone
            // treat it as a process (a thread entry would only cost a slot until evicted).
            if self
                .proc
                .tgid_of(child_tid)
                .is_some_and(|tgid| tgid != child_tid)
            {
                return None;
            }
            child_tid
        };
        if child == parent.tgid {
            return None;
        }
        if self.lookup(parent.tgid).is_some() {
            self.resolve_web_server(parent.tgid);
        }
        // The child starts with its parent's credentials (a fork record does not carry the
        // effective uid).
        let euid = parent
            .euid
            .or_else(|| self.get(parent.tgid).and_then(|p| p.euid));
        let (exe, argv, argv_truncated, filename, web_server, inherited) =
            match self.get(parent.tgid) {
                Some(p) => (
                    p.exe.clone(),
                    p.argv.clone(),
                    p.argv_truncated,
                    p.filename.clone(),
                    p.web_server.clone(),
                    Some((
                        p.file,
                        p.program.clone(),
                        p.web_server_match,
                        p.own_tool.clone(),
                        p.tool.clone(),
                    )),
                ),
                None => (None, Vec::new(), false, None, None, None),
            };
        // A web server's child has it as its nearest one (and no shell or tool below it yet);
        // anyone else's child inherits theirs.
        let (web_server, parent_tool) = match self.get(parent.tgid) {
            Some(p) if p.runs_web_server => (Some(Arc::new(p.web_server_info())), None),
            Some(p) => (web_server, p.tool.clone()),
            None => (web_server, None),
        };
        // The child runs its parent's program: the parent's verdicts, with itself as the tool.
        let (file, program, web_server_match, own_tool, judged) = match inherited {
            Some((file, program, web_match, own_tool, _)) => (
                file,
                program,
                web_match,
                own_tool.map(|t| {
                    Arc::new(ToolInfo {
                        pid: child,
                        ..(*t).clone()
                    })
                }),
                true,
            ),
            None => (None, None, None, None, false),
        };
        // The parent's (itself, when it is the shell): what its exec'd command ran under.
        let tool = parent_tool.or_else(|| own_tool.clone());
        self.failed.remove(&child);
        self.insert(ProcessEntry {
            pid: child,
            ppid: parent.tgid,
            uid: parent.uid,
            gid: parent.gid,
            euid,
            // A child starts with the forking thread's comm.
            comm: parent.comm.clone(),
            exe,
            argv,
            argv_truncated,
            filename,
            web_server,
            lineage_resolved: true,
            runs_web_server: web_server_match.is_some(),
            argv_inherited: true,
            cgroup_id: Some(parent.cgroup_id),
            start_ns: Some(parent.ktime_ns),
            exited_ns: None,
            last_used: 0,
            stamp: 0,
            file,
            program,
            web_server_match,
            own_tool,
            tool,
            judged,
        });
        Some(child)
    }

    /// `sched_process_exec`: the process now runs a new program.
    pub fn on_exec(&mut self, ev: &Exec) {
        let h = &ev.origin;
        // The kernel side resolves mm->exe_file; without it /proc/<pid>/exe is the next best
        // source (never comm, which any process can set).
        // A truncated kernel path is only the end of the real one ("…" + tail): /proc has it
        // whole while the process lives.
        let exe = if ev.exe_truncated {
            self.proc.exe(h.tgid).or_else(|| ev.exe.clone())
        } else {
            ev.exe.clone().or_else(|| self.proc.exe(h.tgid))
        };
        let start_ns = self.get(h.tgid).and_then(|e| e.start_ns);
        let live = self.get(h.tgid).is_some_and(|e| e.exited_ns.is_none());
        if live {
            self.resolve_web_server(h.tgid);
        }
        // A live entry keeps its fork-time parent: the header reports the current one, which is
        // init (or a subreaper) after a double fork or setsid, and would cut the lineage.
        let (ppid, web_server, lineage_resolved, tool_before) = match self.get(h.tgid) {
            Some(old) if live => (
                if old.ppid != 0 { old.ppid } else { h.ppid },
                Self::web_server_before_exec(old),
                true,
                // A shell that execs its command in place (`sh -c cmd`) still ran it; a web
                // server's own exec starts below it.
                if old.runs_web_server {
                    None
                } else {
                    old.tool.clone()
                },
            ),
            old => (
                if h.ppid != 0 {
                    h.ppid
                } else {
                    old.map_or(0, |e| e.ppid)
                },
                None,
                false,
                None,
            ),
        };
        let judged = self.judge(
            h.tgid,
            exe.as_deref(),
            Some(&ev.filename),
            &ev.argv,
            ev.file,
        );
        let tool = judged.tool.clone().or(tool_before);
        let start_ns = start_ns.or_else(|| self.proc.read(h.tgid).and_then(|e| e.start_ns));
        // A setuid program's effective uid is set by this exec: the kernel's, else /proc's.
        let euid = h.euid.or_else(|| self.proc.euid(h.tgid));
        self.failed.remove(&h.tgid);
        self.insert(ProcessEntry {
            pid: h.tgid,
            ppid,
            uid: h.uid,
            gid: h.gid,
            euid,
            comm: h.comm.clone(),
            exe,
            argv: ev.argv.clone(),
            argv_truncated: ev.argv_truncated,
            filename: Some(ev.filename.clone()),
            web_server,
            lineage_resolved,
            runs_web_server: judged.web_server.is_some(),
            argv_inherited: false,
            cgroup_id: Some(h.cgroup_id),
            start_ns,
            exited_ns: None,
            last_used: 0,
            stamp: 0,
            file: ev.file,
            program: judged.program,
            web_server_match: judged.web_server,
            own_tool: judged.tool,
            tool,
            judged: true,
        });
    }

    /// The nearest web server of a process once it execs: the program being replaced when that
    /// is one (a server that runs `execv("/bin/sh")` in place: depth 0), unless that program is
    /// only the copy of its web server parent's that fork handed down (php-fpm's `system()`
    /// child before it execs sh), where the parent stays the nearest, as a title says "parent".
    fn web_server_before_exec(old: &ProcessEntry) -> Option<Arc<WebServerInfo>> {
        if !old.runs_web_server {
            return old.web_server.clone();
        }
        match &old.web_server {
            Some(w) if w.pid == old.ppid && w.exe == old.exe && w.filename == old.filename => {
                Some(Arc::clone(w))
            }
            _ => Some(Arc::new(old.web_server_info())),
        }
    }

    /// A successful setuid-family call changed the process's real uid: its later records and
    /// its children's carry the new ids.
    pub fn on_cred(&mut self, h: &Origin) {
        let euid = h.euid.or_else(|| self.proc.euid(h.tgid));
        if let Some(e) = self.entries.get_mut(&h.tgid) {
            e.uid = h.uid;
            e.gid = h.gid;
            e.euid = euid;
        }
    }

    /// `sched_process_exit` of a whole thread group: kept for [`EXIT_GRACE_NS`], then removed.
    pub fn on_exit(&mut self, h: &Origin) {
        self.expire(h.ktime_ns);
        if let Some(e) = self.entries.get_mut(&h.tgid)
            && e.exited_ns.is_none()
        {
            e.exited_ns = Some(h.ktime_ns);
            self.exited.push_back((h.tgid, h.ktime_ns));
        }
    }

    /// Removes exited entries whose grace period ended before `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        while let Some(&(pid, at)) = self.exited.front() {
            if at.saturating_add(EXIT_GRACE_NS) > now_ns {
                break;
            }
            self.exited.pop_front();
            if self
                .entries
                .get(&pid)
                .is_some_and(|e| e.exited_ns == Some(at))
            {
                self.entries.remove(&pid);
            }
        }
    }

    /// Parent first, up to pid 1, at most [`ANCESTRY_MAX`] entries; stops at a loop, an unknown
    /// pid, or a "parent" younger than its child (a reused pid). Built once and shared by every
    /// record of the process and of its siblings until one of its members changes.
    pub fn ancestry(&mut self, pid: u32) -> Ancestry {
        let Some((ppid, start)) = self.lookup(pid).map(|e| (e.ppid, e.start_ns)) else {
            return Ancestry::default();
        };
        if ppid == 0 || ppid == pid || !self.is_parent(ppid, start) {
            return Ancestry::default();
        }
        let chain = if let Some(chain) = self.cached_ancestry(ppid) {
            chain
        } else {
            let built = self.build_ancestry(ppid);
            let ancestry = built.ancestry.clone();
            if self.ancestries.len() >= ANCESTRY_CACHE_MAX {
                // Every entry is stale or cold by then; starting over is cheaper than tracking
                // use.
                self.ancestries.clear();
            }
            self.ancestries.insert(ppid, built);
            ancestry
        };
        // A loop back to the process itself (pids reused in a cycle) ends its ancestry there.
        match chain.iter().position(|a| a.pid == pid) {
            Some(at) => Ancestry::new(chain[..at].to_vec()),
            None => chain,
        }
    }

    /// Whether the table's `ppid` can be the parent of a process started at `child_start`: not
    /// a process younger than its child (the pid was reused).
    fn is_parent(&mut self, ppid: u32, child_start: Option<u64>) -> bool {
        let Some(p) = self.lookup(ppid) else {
            return false;
        };
        !matches!((p.start_ns, child_start), (Some(ps), Some(cs)) if ps > cs.saturating_add(START_SLACK_NS))
    }

    /// The cached ancestry starting at `first`, when every member is still the entry it was
    /// built from (members are touched as used, so that the ancestors of busy processes are not
    /// the least recently used).
    fn cached_ancestry(&mut self, first: u32) -> Option<Ancestry> {
        let cached = self.ancestries.get(&first)?;
        if cached
            .unknown
            .is_some_and(|pid| self.entries.contains_key(&pid))
        {
            return None;
        }
        self.tick += 1;
        for &(pid, stamp) in &cached.members {
            match self.entries.get_mut(&pid) {
                Some(e) if e.stamp == stamp => e.last_used = self.tick,
                _ => return None,
            }
        }
        Some(cached.ancestry.clone())
    }

    /// `first` (a known process) and its ancestors.
    fn build_ancestry(&mut self, first: u32) -> CachedAncestry {
        let mut out = Vec::new();
        let mut members = Vec::new();
        let mut seen = HashSet::new();
        let mut unknown = None;
        let mut next = Some(first);
        let mut child_start: Option<u64> = None;
        while let Some(pid) = next.take() {
            if pid == 0 || out.len() >= ANCESTRY_MAX || !seen.insert(pid) {
                break;
            }
            let Some(p) = self.lookup(pid) else {
                unknown = Some(pid);
                break;
            };
            if let (Some(ps), Some(cs)) = (p.start_ns, child_start)
                && ps > cs.saturating_add(START_SLACK_NS)
            {
                break;
            }
            out.push(p.ancestor());
            members.push((p.pid, p.stamp));
            child_start = p.start_ns;
            next = Some(p.ppid);
        }
        CachedAncestry {
            members,
            unknown,
            ancestry: Ancestry::new(out),
        }
    }

    fn insert(&mut self, mut entry: ProcessEntry) {
        if !self.entries.contains_key(&entry.pid) && self.entries.len() >= self.capacity {
            self.evict();
        }
        self.tick += 1;
        self.stamp += 1;
        entry.last_used = self.tick;
        entry.stamp = self.stamp;
        if !entry.judged {
            let judged = self.judge(
                entry.pid,
                entry.exe.as_deref(),
                entry.filename.as_deref(),
                &entry.argv,
                entry.file,
            );
            entry.apply(judged);
        }
        self.entries.insert(entry.pid, entry);
    }

    /// Makes room for one entry: the oldest exited process first, else a batch of the least
    /// recently used (a batch, so that a table full of live processes does not scan on every
    /// insert).
    fn evict(&mut self) {
        while let Some((pid, at)) = self.exited.pop_front() {
            if self
                .entries
                .get(&pid)
                .is_some_and(|e| e.exited_ns == Some(at))
            {
                self.entries.remove(&pid);
                self.evicted += 1;
                return;
            }
        }
        let batch = (self.capacity / 64).max(1);
        let mut by_use: Vec<(u64, u32)> = self
            .entries
            .values()
            .map(|e| (e.last_used, e.pid))
            .collect();
        let n = batch.min(by_use.len());
        if n == 0 {
            return;
        }
        by_use.select_nth_unstable(n - 1);
        for &(_, pid) in &by_use[..n] {
            self.entries.remove(&pid);
        }
        self.evicted += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, path::Path};

    use monitor_common::EventKind;

    use super::*;
    use crate::{
        policy::Policy,
        testing::{TempDir, fake_proc, origin as hdr},
    };

    fn exec(tgid: u32, ppid: u32, comm: &str, exe: &str, argv: &[&str], ktime_ns: u64) -> Exec {
        crate::testing::exec(tgid, ppid, comm, exe, argv, ktime_ns)
    }

    fn pids(a: &[Ancestor]) -> Vec<u32> {
        a.iter().map(|a| a.pid).collect()
    }

    #[test]
    fn seeded_from_proc() {
        let dir = TempDir::new();
        fake_proc(
            &dir.0,
            1,
            0,
            "systemd",
            Some("/usr/lib/systemd/systemd"),
            &["/sbin/init"],
            1,
        );
        fake_proc(
            &dir.0,
            500,
            1,
            "nginx",
            Some("/usr/sbin/nginx"),
            &["nginx: master process /usr/sbin/nginx"],
            300,
        );
        fake_proc(
            &dir.0,
            501,
            500,
            "nginx",
            Some("/usr/sbin/nginx"),
            &["nginx: worker process"],
            301,
        );
        fake_proc(&dir.0, 2, 0, "kthreadd", None, &[], 1);
        fs::create_dir_all(dir.0.join("self")).unwrap();
        let mut t = ProcessTable::new(100, &dir.0);
        assert_eq!(t.seed().unwrap(), 4);
        let w = t.get(501).unwrap();
        assert_eq!(w.exe.as_deref(), Some("/usr/sbin/nginx"));
        assert_eq!(w.argv, ["nginx: worker process"]);
        assert_eq!((w.ppid, w.uid, w.gid), (500, 1000, 100));
        assert_eq!(w.comm, "nginx");
        assert_eq!(t.get(2).unwrap().exe, None);
        assert_eq!(t.get(2).unwrap().argv, Vec::<String>::new());
        let a = t.ancestry(501);
        assert_eq!(pids(&a), [500, 1]);
        assert_eq!(a[0].argv, ["nginx: master process /usr/sbin/nginx"]);
        assert_eq!(a[1].exe.as_deref(), Some("/usr/lib/systemd/systemd"));
    }

    /// What a server that rewrote its title leaves in cmdline: the title, then NUL padding over
    /// the rest of the old argument area.
    fn set_title(root: &Path, pid: u32, title: &str) {
        let mut cmdline = title.as_bytes().to_vec();
        cmdline.extend_from_slice(&[0; 40]);
        fs::write(root.join(pid.to_string()).join("cmdline"), cmdline).unwrap();
    }

    #[test]
    fn forked_child_title_is_read_once_from_proc() {
        let dir = TempDir::new();
        fake_proc(
            &dir.0,
            900,
            1,
            "php-fpm8.2",
            Some("/usr/sbin/php-fpm8.2"),
            &["php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)"],
            5,
        );
        fs::create_dir_all(dir.0.join("self")).unwrap();
        let mut t = ProcessTable::new(10, &dir.0);
        t.seed().unwrap();
        // Worker 901 forks after the monitor started and renames itself; 902 forks and is gone
        // from /proc by the time anyone asks.
        t.on_fork(&hdr(900, 1, "php-fpm8.2", 10), 901, 901);
        t.on_fork(&hdr(900, 1, "php-fpm8.2", 11), 902, 902);
        fake_proc(
            &dir.0,
            901,
            900,
            "php-fpm8.2",
            Some("/usr/sbin/php-fpm8.2"),
            &[],
            10,
        );
        set_title(&dir.0, 901, "php-fpm: pool www");
        assert_eq!(
            t.get(901).unwrap().argv,
            t.get(900).unwrap().argv,
            "inherited at fork"
        );
        assert_eq!(t.lookup(901).unwrap().argv, ["php-fpm: pool www"]);
        assert_eq!(
            t.lookup(902).unwrap().argv,
            ["php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)"],
            "no /proc entry: the inherited argv stays"
        );
        // Read once: a later title change is not chased on every lookup.
        fs::write(dir.0.join("901/cmdline"), b"php-fpm: pool other\0").unwrap();
        assert_eq!(t.lookup(901).unwrap().argv, ["php-fpm: pool www"]);
        assert_eq!(t.ancestry(901)[0].pid, 900);
    }

    #[test]
    fn rewritten_process_title_padding_is_not_arguments() {
        // php-fpm sets its title over the old argv area and pads the rest with NULs.
        let dir = TempDir::new();
        fake_proc(
            &dir.0,
            900,
            1,
            "php-fpm8.2",
            Some("/usr/sbin/php-fpm8.2"),
            &[],
            5,
        );
        set_title(&dir.0, 900, "php-fpm: pool www");
        fs::create_dir_all(dir.0.join("self")).unwrap();
        let mut t = ProcessTable::new(10, &dir.0);
        t.seed().unwrap();
        let e = t.get(900).unwrap();
        assert_eq!(e.argv, ["php-fpm: pool www"]);
        assert!(!e.argv_truncated);
    }

    #[test]
    fn lineage_through_generations() {
        let dir = TempDir::new();
        fake_proc(&dir.0, 1, 0, "init", Some("/sbin/init"), &["init"], 1);
        fake_proc(
            &dir.0,
            100,
            1,
            "php-fpm",
            Some("/usr/sbin/php-fpm8.2"),
            &["php-fpm: master"],
            10,
        );
        let mut t = ProcessTable::new(100, &dir.0);
        t.seed().unwrap();
        // php-fpm forks a worker, the worker forks, the child execs sh, sh forks, that execs id.
        t.on_fork(&hdr(100, 1, "php-fpm", 1_000_000_000), 200, 200);
        t.on_fork(&hdr(200, 100, "php-fpm", 2_000_000_000), 300, 300);
        t.on_exec(&exec(
            300,
            200,
            "sh",
            "/usr/bin/dash",
            &["sh", "-c", "id"],
            3_000_000_000,
        ));
        t.on_fork(&hdr(300, 200, "sh", 4_000_000_000), 400, 400);
        t.on_exec(&exec(400, 300, "id", "/usr/bin/id", &["id"], 5_000_000_000));
        let a = t.ancestry(400);
        assert_eq!(pids(&a), [300, 200, 100, 1]);
        assert_eq!(
            a[0],
            Ancestor {
                pid: 300,
                exe: Some("/usr/bin/dash".into()),
                comm: "sh".into(),
                argv: vec!["sh".into(), "-c".into(), "id".into()]
            }
        );
        // The worker inherited the master's identity at fork.
        assert_eq!(a[1].exe.as_deref(), Some("/usr/sbin/php-fpm8.2"));
        assert_eq!(a[1].argv, ["php-fpm: master"]);
        let id = t.get(400).unwrap();
        assert_eq!((id.uid, id.gid, id.cgroup_id), (33, 33, Some(9)));
        assert_eq!(
            id.start_ns,
            Some(4_000_000_000),
            "start is the fork, not the exec"
        );
    }

    /// The effective uid: from `/proc` at seeding, set by an exec (a setuid program's), kept
    /// through records that do not carry it, handed down at fork, changed by a uid change.
    #[test]
    fn effective_uid_through_exec_fork_and_cred() {
        let dir = TempDir::new();
        fake_proc(&dir.0, 1, 0, "init", Some("/sbin/init"), &["init"], 1);
        let mut t = ProcessTable::new(100, &dir.0);
        t.seed().unwrap();
        assert_eq!(t.get(1).unwrap().euid, Some(1000), "fake_proc's Uid line");
        // uid 65534 runs a setuid-root program.
        t.on_fork(&hdr(1, 0, "init", 1_000_000_000), 300, 300);
        let mut e = exec(
            300,
            1,
            "passwd",
            "/usr/bin/passwd",
            &["passwd"],
            2_000_000_000,
        );
        e.origin.uid = 65534;
        e.origin.euid = Some(0);
        t.on_exec(&e);
        assert_eq!(
            (t.get(300).unwrap().uid, t.get(300).unwrap().euid),
            (65534, Some(0))
        );
        // A fork record carries no effective uid: the child has its parent's.
        let mut fork = hdr(300, 1, "passwd", 3_000_000_000);
        fork.uid = 65534;
        fork.euid = None;
        t.on_fork(&fork, 301, 301);
        assert_eq!(t.get(301).unwrap().euid, Some(0));
        // An exit (no effective uid in it) leaves it; a uid change sets it.
        let mut exit = hdr(301, 300, "passwd", 4_000_000_000);
        exit.euid = None;
        assert_eq!(t.for_event(&exit).euid, Some(0));
        let mut cred = hdr(301, 300, "passwd", 5_000_000_000);
        cred.kind = EventKind::Cred;
        (cred.uid, cred.euid) = (0, Some(0));
        t.on_cred(&cred);
        assert_eq!(
            (t.get(301).unwrap().uid, t.get(301).unwrap().euid),
            (0, Some(0))
        );
        cred.euid = Some(1000);
        t.on_cred(&cred);
        assert_eq!(t.get(301).unwrap().euid, Some(1000));
    }

    #[test]
    fn exec_replaces_identity() {
        let dir = TempDir::new();
        let mut t = ProcessTable::new(100, &dir.0);
        t.on_fork(&hdr(10, 1, "bash", 1), 11, 11);
        assert_eq!(t.get(11).unwrap().comm, "bash");
        let mut ev = exec(11, 0, "curl", "/usr/bin/curl", &["curl", "x"], 2);
        ev.argv_truncated = true;
        t.on_exec(&ev);
        let e = t.get(11).unwrap();
        assert_eq!(e.comm, "curl");
        assert_eq!(e.exe.as_deref(), Some("/usr/bin/curl"));
        assert_eq!(e.argv, ["curl", "x"]);
        assert!(e.argv_truncated);
        assert_eq!(e.ppid, 10, "ppid 0 in the header keeps the known parent");
        // An unresolved exe is not guessed from comm or filename.
        let mut ev = exec(11, 10, "sh", "/bin/sh", &["sh"], 3);
        ev.exe = None;
        t.on_exec(&ev);
        assert_eq!(t.get(11).unwrap().exe, None);
    }

    #[test]
    fn threads_are_not_processes() {
        let dir = TempDir::new();
        let mut t = ProcessTable::new(100, &dir.0);
        t.on_fork(&hdr(10, 1, "java", 1), 12, 10);
        assert!(t.get(12).is_none());
        assert!(t.get(10).is_none(), "no /proc entry and no event from it");
    }

    #[test]
    fn exit_keeps_entry_for_grace_period() {
        let dir = TempDir::new();
        fake_proc(&dir.0, 1, 0, "init", Some("/sbin/init"), &["init"], 0);
        let mut t = ProcessTable::new(100, &dir.0);
        t.on_fork(&hdr(10, 1, "sh", 1_000), 20, 20);
        t.on_fork(&hdr(20, 10, "sh", 2_000), 30, 30);
        // The intermediate shell exits before the grandchild's events are processed.
        let mut h = hdr(20, 10, "sh", 3_000);
        h.kind = EventKind::Exit;
        t.on_exit(&h);
        assert!(t.get(20).unwrap().exited_ns.is_some());
        // A connect event of the orphan (header ppid 1 after reparenting) keeps the lineage
        // recorded at fork.
        let e = t.for_event(&hdr(30, 1, "sh", 4_000));
        assert_eq!(e.ppid, 20);
        t.expire(3_000 + EXIT_GRACE_NS - 1);
        assert_eq!(pids(&t.ancestry(30)), [20]);
        assert_eq!(t.ancestry(30)[0].comm, "sh");
        t.expire(3_000 + EXIT_GRACE_NS);
        assert!(t.get(20).is_none());
        assert_eq!(pids(&t.ancestry(30)), Vec::<u32>::new());
        // An exec reports the current parent (init after reparenting): the fork-time parent
        // stays, so the lineage is not rewritten to start at init.
        t.on_exec(&exec(
            30,
            1,
            "nc",
            "/usr/bin/nc",
            &["nc"],
            4_000 + EXIT_GRACE_NS,
        ));
        assert_eq!(t.get(30).unwrap().ppid, 20);
        // Without a live entry the header's parent is all there is.
        t.on_exec(&exec(
            31,
            1,
            "nc",
            "/usr/bin/nc",
            &["nc"],
            5_000 + EXIT_GRACE_NS,
        ));
        assert_eq!(pids(&t.ancestry(31)), [1]);
    }

    #[test]
    fn pid_reuse_during_grace_is_a_new_process() {
        let dir = TempDir::new();
        let mut t = ProcessTable::new(100, &dir.0);
        t.on_fork(&hdr(10, 1, "a", 1_000), 20, 20);
        let mut h = hdr(20, 10, "a", 2_000);
        h.kind = EventKind::Exit;
        t.on_exit(&h);
        t.on_fork(&hdr(11, 1, "b", 3_000), 20, 20);
        t.expire(2_000 + EXIT_GRACE_NS);
        let e = t
            .get(20)
            .expect("the new process survives the old one's expiry");
        assert_eq!((e.ppid, e.exited_ns), (11, None));
    }

    #[test]
    fn short_lived_exec_after_exit_ordering() {
        // `true` runs and exits; its exec and exit arrive in that order, and a late event of
        // its child (or an alert lookup) still resolves during the grace period.
        let dir = TempDir::new();
        let mut t = ProcessTable::new(100, &dir.0);
        t.on_fork(&hdr(10, 1, "bash", 1_000), 20, 20);
        t.on_exec(&exec(20, 10, "true", "/usr/bin/true", &["true"], 1_100));
        let mut h = hdr(20, 10, "true", 1_200);
        h.kind = EventKind::Exit;
        t.on_exit(&h);
        let e = t.lookup(20).unwrap();
        assert_eq!(e.exe.as_deref(), Some("/usr/bin/true"));
        // An exec event that is processed after the exit (no /proc entry any more) still
        // installs the new identity instead of failing.
        t.on_exec(&exec(
            20,
            10,
            "true",
            "/usr/bin/true",
            &["true", "again"],
            1_150,
        ));
        assert_eq!(t.get(20).unwrap().argv, ["true", "again"]);
    }

    #[test]
    fn unknown_pid_read_from_proc_once() {
        let dir = TempDir::new();
        let mut t = ProcessTable::new(100, &dir.0);
        assert!(t.lookup(77).is_none());
        // Appears in /proc later: the negative answer is remembered (no re-read per event)...
        fake_proc(&dir.0, 77, 1, "late", Some("/usr/bin/late"), &["late"], 5);
        assert!(t.lookup(77).is_none());
        // ...until a fork or exec tells us the pid is (re)used.
        t.on_fork(&hdr(1, 0, "init", 10), 77, 77);
        assert!(t.lookup(77).is_some());
        // A pid never seen but present in /proc is loaded lazily.
        fake_proc(
            &dir.0,
            78,
            1,
            "lazy",
            Some("/usr/bin/lazy"),
            &["lazy", "-x"],
            5,
        );
        assert_eq!(t.lookup(78).unwrap().argv, ["lazy", "-x"]);
        // An event from a pid /proc does not know creates an entry from the header.
        let e = t.for_event(&hdr(79, 1, "ghost", 20));
        assert_eq!(
            (e.pid, e.ppid, e.comm.as_str(), e.exe.clone()),
            (79, 1, "ghost", None)
        );
    }

    #[test]
    fn bound_enforced_exited_first_then_lru() {
        let dir = TempDir::new();
        let mut t = ProcessTable::new(4, &dir.0);
        for pid in 10..14 {
            t.on_fork(&hdr(1, 0, "init", 1), pid, pid);
        }
        let mut h = hdr(12, 1, "x", 2);
        h.kind = EventKind::Exit;
        t.on_exit(&h);
        t.on_fork(&hdr(1, 0, "init", 3), 14, 14);
        assert_eq!(t.len(), 4);
        assert!(t.get(12).is_none(), "the exited entry goes first");
        assert_eq!(t.stats().evicted, 1);
        // No exited entries: the least recently used goes.
        t.lookup(10);
        t.lookup(11);
        t.lookup(14);
        t.on_fork(&hdr(1, 0, "init", 4), 15, 15);
        assert_eq!(t.len(), 4);
        assert!(t.get(13).is_none());
        assert_eq!(
            t.stats(),
            TableStats {
                size: 4,
                capacity: 4,
                evicted: 2
            }
        );
        for pid in 100..1000 {
            t.on_fork(&hdr(1, 0, "init", 5), pid, pid);
        }
        assert!(t.len() <= 4);
    }

    #[test]
    fn ancestry_is_shared_until_the_tree_changes() {
        let dir = TempDir::new();
        let mut t = ProcessTable::new(1000, &dir.0);
        t.on_exec(&exec(20, 1, "sh", "/bin/sh", &["sh", "-c", "x"], 1));
        t.on_exec(&exec(21, 20, "curl", "/usr/bin/curl", &["curl", "x"], 2));
        let first = t.ancestry(21);
        let again = t.ancestry(21);
        assert_eq!(pids(&first), [20]);
        assert!(
            std::ptr::eq(first.as_ptr(), again.as_ptr()),
            "a second record of the process shares the first one's list"
        );
        // The parent execs another program: the next record sees it.
        t.on_exec(&exec(20, 1, "python3", "/usr/bin/python3", &["python3"], 3));
        let after = t.ancestry(21);
        assert_eq!(after[0].comm, "python3");
        assert_eq!(after[0].argv, ["python3"]);
        // And its JSON is the plain list's.
        assert_eq!(
            serde_json::to_string(&after).expect("serializes"),
            serde_json::to_string(&after.to_vec()).expect("serializes")
        );
    }

    #[test]
    fn siblings_share_their_ancestry_until_an_ancestor_changes() {
        let dir = TempDir::new();
        let mut t = ProcessTable::new(1000, &dir.0);
        t.on_exec(&exec(30, 1, "bash", "/bin/bash", &["bash"], 1));
        t.on_exec(&exec(31, 30, "make", "/usr/bin/make", &["make"], 2));
        t.on_exec(&exec(40, 31, "true", "/bin/true", &["true"], 3));
        let first = t.ancestry(40);
        assert_eq!(pids(&first), [31, 30]);
        // New children of the same parent (an exec storm) share the built list, although the
        // table changed (they were added).
        for (i, pid) in (41..60).enumerate() {
            t.on_exec(&exec(pid, 31, "true", "/bin/true", &["true"], 4 + i as u64));
            let a = t.ancestry(pid);
            assert!(std::ptr::eq(first.as_ptr(), a.as_ptr()), "pid {pid}");
        }
        // A grandparent's new program is seen by the next sibling.
        t.on_exec(&exec(30, 1, "zsh", "/bin/zsh", &["zsh", "-l"], 30));
        t.on_exec(&exec(61, 31, "true", "/bin/true", &["true"], 31));
        let after = t.ancestry(61);
        assert_eq!(after[1].comm, "zsh");
        assert_eq!(after[1].argv, ["zsh", "-l"]);
        // The grandparent gone from the table: the chain ends at the parent.
        t.on_exit(&crate::testing::origin(30, 1, "zsh", 40));
        t.expire(40 + EXIT_GRACE_NS + 1);
        assert_eq!(pids(&t.ancestry(61)), [31]);
    }

    #[test]
    fn ancestry_is_loop_safe_and_bounded() {
        let dir = TempDir::new();
        let mut t = ProcessTable::new(1000, &dir.0);
        // 10 → 11 → 12 → 10 (corrupt data: a cycle).
        t.on_exec(&exec(10, 12, "a", "/a", &["a"], 1));
        t.on_exec(&exec(11, 10, "b", "/b", &["b"], 1));
        t.on_exec(&exec(12, 11, "c", "/c", &["c"], 1));
        assert_eq!(pids(&t.ancestry(10)), [12, 11]);
        // Self-parent.
        t.on_exec(&exec(20, 20, "s", "/s", &["s"], 1));
        assert_eq!(pids(&t.ancestry(20)), Vec::<u32>::new());
        // A deep chain stops at ANCESTRY_MAX.
        for pid in 101..200 {
            t.on_fork(&hdr(pid - 1, 0, "d", u64::from(pid)), pid, pid);
        }
        let a = t.ancestry(199);
        assert_eq!(a.len(), ANCESTRY_MAX);
        assert_eq!(a[0].pid, 198);
    }

    #[test]
    fn reused_parent_pid_is_not_an_ancestor() {
        let dir = TempDir::new();
        // /proc says pid 50 started long after its "child" 60 (pid 50 was reused).
        fake_proc(&dir.0, 50, 1, "new", Some("/new"), &["new"], 1_000_000);
        let mut t = ProcessTable::new(100, &dir.0);
        t.on_fork(&hdr(50, 1, "old", 1_000), 60, 60);
        assert_eq!(pids(&t.ancestry(60)), Vec::<u32>::new());
    }

    #[test]
    fn real_proc_knows_this_process() {
        let mut t = ProcessTable::new(DEFAULT_CAPACITY, "/proc");
        assert!(t.seed().unwrap() > 0);
        let me = std::process::id();
        let e = t.get(me).expect("this test process");
        assert_eq!(
            e.exe.as_deref(),
            std::env::current_exe()
                .ok()
                .as_deref()
                .and_then(Path::to_str)
        );
        let args: Vec<String> = std::env::args().take(32).collect();
        assert_eq!(e.argv, args);
    }

    /// A table that knows php-fpm (pid 100, master, seeded from /proc under init) and classifies
    /// web servers with the embedded default policy.
    fn fpm_table(dir: &TempDir) -> ProcessTable {
        fake_proc(&dir.0, 1, 0, "init", Some("/sbin/init"), &["init"], 1);
        fake_proc(
            &dir.0,
            100,
            1,
            "php-fpm8.2",
            Some("/usr/sbin/php-fpm8.2"),
            &["php-fpm: master process"],
            10,
        );
        classified_table(dir)
    }

    /// A seeded table over `dir` that classifies with the embedded default policy.
    fn classified_table(dir: &TempDir) -> ProcessTable {
        let mut t = ProcessTable::new(1000, &dir.0);
        t.set_web_servers(crate::policy::Policy::embedded_default().web_servers);
        t.seed().unwrap();
        t
    }

    const S: u64 = 1_000_000_000;

    fn exit(t: &mut ProcessTable, pid: u32, ktime_ns: u64) {
        let mut h = hdr(pid, 1, "x", ktime_ns);
        h.kind = EventKind::Exit;
        t.on_exit(&h);
    }

    fn ws_pid(t: &mut ProcessTable, pid: u32) -> Option<(u32, Option<String>)> {
        t.web_server(pid).map(|w| (w.pid, w.exe))
    }

    #[test]
    fn double_fork_then_exec_after_reparenting_keeps_lineage() {
        let dir = TempDir::new();
        let mut t = fpm_table(&dir);
        // php-fpm → 200 (fork, setsid) → 300 (fork); 200 exits; 300 is reparented to init and
        // execs sh: the exec's header says ppid 1.
        t.on_fork(&hdr(100, 1, "php-fpm8.2", S), 200, 200);
        t.on_fork(&hdr(200, 100, "php-fpm8.2", 2 * S), 300, 300);
        exit(&mut t, 200, 3 * S);
        t.on_exec(&exec(300, 1, "sh", "/usr/bin/dash", &["sh", "-i"], 4 * S));
        assert_eq!(t.get(300).unwrap().ppid, 200);
        assert_eq!(pids(&t.ancestry(300)), [200, 100, 1]);
        let ws = t.web_server(300).unwrap();
        assert_eq!(
            (ws.pid, ws.exe.as_deref()),
            (200, Some("/usr/sbin/php-fpm8.2"))
        );
        // The process itself stays a shell, not a web server.
        assert_eq!(t.get(300).unwrap().exe.as_deref(), Some("/usr/bin/dash"));
    }

    #[test]
    fn web_server_survives_intermediate_exit_and_grace_period() {
        let dir = TempDir::new();
        let mut t = fpm_table(&dir);
        // php-fpm worker 200 runs sh (300) which runs python (400); the worker is recycled and sh
        // exits; python connects out 36 s later.
        t.on_fork(&hdr(100, 1, "php-fpm8.2", S), 200, 200);
        t.on_fork(&hdr(200, 100, "php-fpm8.2", 2 * S), 300, 300);
        t.on_exec(&exec(
            300,
            200,
            "sh",
            "/usr/bin/dash",
            &["sh", "-c", "x"],
            2 * S,
        ));
        t.on_fork(&hdr(300, 200, "sh", 3 * S), 400, 400);
        t.on_exec(&exec(
            400,
            300,
            "python3",
            "/usr/bin/python3.11",
            &["python3"],
            3 * S,
        ));
        exit(&mut t, 300, 4 * S);
        exit(&mut t, 200, 5 * S);
        let e = t.for_event(&hdr(400, 1, "python3", 41 * S));
        assert_eq!(e.pid, 400);
        assert!(t.get(200).is_none() && t.get(300).is_none(), "expired");
        assert_eq!(pids(&t.ancestry(400)), Vec::<u32>::new());
        assert_eq!(
            ws_pid(&mut t, 400),
            Some((200, Some("/usr/sbin/php-fpm8.2".into())))
        );
    }

    #[test]
    fn web_server_at_any_depth_beyond_the_ancestry_cap() {
        let dir = TempDir::new();
        let mut t = fpm_table(&dir);
        // 18 generations of python under php-fpm.
        let mut parent = 100;
        for (i, pid) in (1000..1018).enumerate() {
            let at = (i as u64 + 1) * S;
            t.on_fork(&hdr(parent, 1, "x", at), pid, pid);
            t.on_exec(&exec(
                pid,
                parent,
                "python3",
                "/usr/bin/python3.11",
                &["python3"],
                at,
            ));
            parent = pid;
        }
        assert_eq!(
            t.ancestry(1017).len(),
            ANCESTRY_MAX,
            "printed ancestry stays capped"
        );
        assert_eq!(
            ws_pid(&mut t, 1017),
            Some((100, Some("/usr/sbin/php-fpm8.2".into())))
        );
        // The same chain known only from /proc (seeded): the walk is uncapped too.
        let dir = TempDir::new();
        let mut t2 = fpm_table(&dir);
        let mut parent = 100;
        for pid in 2000..2018 {
            fake_proc(
                &dir.0,
                pid,
                parent,
                "python3",
                Some("/usr/bin/python3.11"),
                &["p"],
                20,
            );
            parent = pid;
        }
        // Lazily read, ancestors included.
        assert_eq!(ws_pid(&mut t2, 2017).map(|w| w.0), Some(100));
        let t3 = classified_table(&dir);
        assert_eq!(
            t3.get(2017).unwrap().web_server.as_ref().map(|w| w.pid),
            Some(100),
            "seeded"
        );
    }

    #[test]
    fn script_server_is_named_by_exec_filename() {
        let dir = TempDir::new();
        let mut t = fpm_table(&dir);
        // gunicorn: a python script; exe is the interpreter, the exec filename names it.
        t.on_fork(&hdr(1, 0, "bash", S), 500, 500);
        let mut ev = exec(
            500,
            1,
            "gunicorn",
            "/usr/bin/python3.11",
            &["/usr/bin/python3", "./bin/gunicorn"],
            S,
        );
        ev.filename = "./bin/gunicorn".into();
        t.on_exec(&ev);
        let ws = t.web_server(500).unwrap();
        assert_eq!(
            (ws.pid, ws.filename.as_deref()),
            (500, Some("./bin/gunicorn"))
        );
        // Its worker is one too (same program); the worker's shell child has the worker as its
        // nearest web server, even after renaming argv and comm.
        t.on_fork(&hdr(500, 1, "gunicorn", 2 * S), 501, 501);
        assert_eq!(ws_pid(&mut t, 501).map(|w| w.0), Some(501));
        t.on_fork(&hdr(501, 500, "x", 3 * S), 502, 502);
        t.on_exec(&exec(502, 501, "sh", "/usr/bin/dash", &["sh"], 3 * S));
        let ws = t.web_server(502).unwrap();
        assert_eq!(
            (ws.pid, ws.filename.as_deref()),
            (501, Some("./bin/gunicorn"))
        );
        // A plain python script is no web server.
        t.on_fork(&hdr(1, 0, "bash", 4 * S), 600, 600);
        let mut ev = exec(
            600,
            1,
            "python3",
            "/usr/bin/python3.11",
            &["python3", "app.py"],
            4 * S,
        );
        ev.filename = "/usr/bin/python3".into();
        t.on_exec(&ev);
        assert_eq!(t.web_server(600), None);
    }

    #[test]
    fn web_server_that_execs_in_place_stays_the_web_server() {
        let dir = TempDir::new();
        let mut t = fpm_table(&dir);
        // A web server started by a shell (200) replaces itself with a shell (os.execv); the
        // shell forks nc.
        t.on_fork(&hdr(1, 0, "bash", S), 200, 200);
        t.on_exec(&exec(
            200,
            1,
            "php-fpm8.2",
            "/usr/sbin/php-fpm8.2",
            &["php-fpm"],
            S,
        ));
        assert_eq!(t.get(200).unwrap().web_server, None);
        t.on_exec(&exec(200, 1, "sh", "/usr/bin/dash", &["sh", "-i"], 2 * S));
        let ws = t.web_server(200).unwrap();
        assert_eq!(
            (ws.pid, ws.exe.as_deref()),
            (200, Some("/usr/sbin/php-fpm8.2")),
            "the replaced program, depth 0"
        );
        t.on_fork(&hdr(200, 100, "sh", 3 * S), 300, 300);
        t.on_exec(&exec(300, 200, "nc", "/usr/bin/nc", &["nc"], 3 * S));
        assert_eq!(
            ws_pid(&mut t, 300),
            Some((200, Some("/usr/sbin/php-fpm8.2".into())))
        );
        // A forked worker doing the same: its master, which forked it, is the nearest (the
        // worker's program was the master's copy), so titles keep saying "parent".
        t.on_fork(&hdr(100, 1, "php-fpm8.2", 4 * S), 210, 210);
        t.on_exec(&exec(210, 100, "sh", "/usr/bin/dash", &["sh"], 5 * S));
        assert_eq!(ws_pid(&mut t, 210).map(|w| w.0), Some(100));
        // Without a classifier nothing is a web server.
        let dir = TempDir::new();
        let mut plain = ProcessTable::new(10, &dir.0);
        plain.on_fork(&hdr(1, 0, "nginx", S), 5, 5);
        plain.on_exec(&exec(5, 1, "nginx", "/usr/sbin/nginx", &["nginx"], S));
        assert_eq!(plain.web_server(5), None);
    }

    /// A table judging by the default policy's lists and a catalog of `bin` (bash and nginx
    /// stand-ins), over a fake /proc with php-fpm's master (900) and worker (901).
    fn identity_table(dir: &TempDir) -> ProcessTable {
        let bin = dir.0.join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::write(bin.join("bash"), "#bash#".repeat(100)).unwrap();
        fs::write(bin.join("nginx"), "#nginx#".repeat(100)).unwrap();
        let proc = dir.0.join("proc");
        fake_proc(
            &proc,
            1,
            0,
            "systemd",
            Some("/usr/lib/systemd/systemd"),
            &["/sbin/init"],
            1,
        );
        fake_proc(
            &proc,
            900,
            1,
            "php-fpm8.2",
            Some("/usr/sbin/php-fpm8.2"),
            &["php-fpm: master"],
            5,
        );
        fake_proc(
            &proc,
            901,
            900,
            "php-fpm8.2",
            Some("/usr/sbin/php-fpm8.2"),
            &["php-fpm: pool www"],
            6,
        );
        fs::create_dir_all(proc.join("self")).unwrap();
        let programs = Policy::embedded_default().programs();
        let mut lists = programs.lists();
        lists.shell_lists = &[];
        let catalog = Catalog::resolve_in(&lists, &[bin.as_path()]);
        let mut t = ProcessTable::new(100, &proc);
        t.set_programs(programs, catalog);
        t.seed().unwrap();
        t
    }

    fn exec_file(tgid: u32, ppid: u32, path: &Path, argv: &[&str], ktime_ns: u64) -> Exec {
        let mut e = exec(tgid, ppid, "x", path.to_str().unwrap(), argv, ktime_ns);
        e.file = Some(crate::identity::file_id(&fs::metadata(path).unwrap()));
        e
    }

    #[test]
    fn programs_known_by_content_and_tools_handed_down() {
        const S: u64 = 1_000_000_000;
        let dir = TempDir::new();
        let mut t = identity_table(&dir);
        // The web shell copies bash to /tmp/.x and runs it from php-fpm's worker.
        let copy = dir.0.join(".x");
        fs::copy(dir.0.join("bin/bash"), &copy).unwrap();
        t.on_fork(&hdr(901, 900, "php-fpm8.2", 10 * S), 950, 950);
        assert_eq!(t.tool(950), None, "php-fpm's child runs php-fpm");
        t.on_exec(&exec_file(
            950,
            901,
            &copy,
            &[".x", "-c", "cat /etc/passwd"],
            10 * S,
        ));
        let e = t.get(950).unwrap();
        let program = e.program.clone().unwrap();
        assert_eq!(program.shell, Some(MatchKind::Content));
        assert!(program.same_as.unwrap().ends_with("/bin/bash"));
        let tool = t.tool(950).unwrap();
        assert_eq!(
            (tool.pid, tool.kind, tool.matched),
            (950, ToolKind::Shell, MatchKind::Content)
        );
        // Its child runs cat: the shell above it is handed down at fork and kept across exec.
        t.on_fork(&hdr(950, 901, ".x", 11 * S), 951, 951);
        t.on_exec(&exec(951, 950, "cat", "/usr/bin/cat", &["cat"], 11 * S));
        assert_eq!(t.tool(951).map(|t| t.pid), Some(950));
        assert_eq!(t.get(951).unwrap().program, None);
        assert_eq!(t.web_server(951).map(|w| w.pid), Some(901));
        // One incident for everything under php-fpm's master, whichever worker ran it.
        let a = t.incident(951).unwrap();
        t.on_fork(&hdr(900, 1, "php-fpm8.2", 12 * S), 902, 902);
        t.on_fork(&hdr(902, 900, "php-fpm8.2", 12 * S), 960, 960);
        t.on_exec(&exec(
            960,
            902,
            "sh",
            "/usr/bin/dash",
            &["sh", "-c", "id"],
            12 * S,
        ));
        assert_eq!(t.incident(960).unwrap(), a);
        assert_eq!(t.incident(1), None);
        // A renamed nginx is a web server by content: its child is under it.
        let ngx = dir.0.join("ngx");
        fs::copy(dir.0.join("bin/nginx"), &ngx).unwrap();
        t.on_fork(&hdr(1, 0, "systemd", 13 * S), 970, 970);
        t.on_exec(&exec_file(970, 1, &ngx, &["ngx"], 13 * S));
        t.on_fork(&hdr(970, 1, "ngx", 14 * S), 971, 971);
        assert_eq!(
            t.web_server(971).map(|w| w.pid),
            Some(971),
            "a worker is nginx too"
        );
        t.on_exec(&exec(971, 970, "sh", "/usr/bin/dash", &["sh"], 14 * S));
        let ws = t.web_server(971).unwrap();
        assert_eq!((ws.pid, ws.matched), (970, Some(MatchKind::Content)));
        // The loader running bash.
        t.on_fork(&hdr(901, 900, "php-fpm8.2", 15 * S), 980, 980);
        let bash = dir.0.join("bin/bash");
        t.on_exec(&exec(
            980,
            901,
            "ld-linux-x86-64",
            "/usr/lib64/ld-linux-x86-64.so.2",
            &["/lib64/ld-linux-x86-64.so.2", bash.to_str().unwrap(), "-i"],
            15 * S,
        ));
        let program = t.get(980).unwrap().program.clone().unwrap();
        assert_eq!(program.shell, Some(MatchKind::Loader));
        assert_eq!(program.loaded.as_deref(), bash.to_str());
        assert_eq!(t.tool(980).unwrap().kind, ToolKind::Shell);
    }

    #[test]
    fn an_empty_cmdline_keeps_the_inherited_argv() {
        let dir = TempDir::new();
        let mut t = identity_table(&dir);
        t.on_fork(&hdr(901, 900, "php-fpm8.2", 10), 990, 990);
        // The child is exiting: /proc still lists it, with an empty cmdline.
        fake_proc(&dir.0.join("proc"), 990, 901, "php-fpm8.2", None, &[], 10);
        assert_eq!(t.lookup(990).unwrap().argv, ["php-fpm: pool www"]);
    }
}
