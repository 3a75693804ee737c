//! What knowing programs by file and content costs: the start-up catalog, the per-exec verdict
//! for a binary of no catalogued size (an exec storm of `/bin/true`), the cached verdict of a
//! copy already hashed, the first hash of a new copy of bash, and the process table's whole exec
//! handling with the default policy's lists.
//!
//! `cargo run --release -p monitor --example identity_bench`; docs/benchmarks.md records a run.
//! No root needed; it copies /usr/bin/bash into a scratch directory under the temp dir.

use std::{fs, hint::black_box, path::Path, time::Instant};

use monitor::{
    decode::{Exec, Origin},
    identity::{Catalog, file_id},
    policy::Policy,
    process_table::ProcessTable,
    procfs::ProcFs,
};
use monitor_common::EventKind;

const EXECS: u32 = 200_000;
const PASSES: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median over [`PASSES`] of `f` run `n` times, in nanoseconds per run.
fn ns_per(n: u32, mut f: impl FnMut(u32)) -> f64 {
    let runs = (0..PASSES)
        .map(|_| {
            let t = Instant::now();
            for i in 0..n {
                f(i);
            }
            t.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
        .collect();
    median(runs)
}

fn main() {
    let policy = Policy::embedded_default();
    let programs = policy.programs();
    let t = Instant::now();
    let mut catalog = Catalog::resolve(&programs.lists());
    let resolve_ms = t.elapsed().as_secs_f64() * 1e3;
    let catalogued = catalog.stats().catalogued;

    let proc = ProcFs::new("/proc");
    let true_id = file_id(&fs::metadata("/usr/bin/true").expect("/usr/bin/true"));
    let miss = ns_per(EXECS, |_| {
        black_box(catalog.judge(&proc, 1, Some("/usr/bin/true"), black_box(&true_id)));
    });

    let dir = std::env::temp_dir().join(format!("monitor-identity-bench-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("scratch dir");
    let copy = dir.join(".x");
    fs::copy("/usr/bin/bash", &copy).expect("copy bash");
    let copy_id = file_id(&fs::metadata(&copy).expect("copy"));
    let first = Instant::now();
    let verdict = catalog.judge(&proc, 1, copy.to_str(), &copy_id);
    let first_ms = first.elapsed().as_secs_f64() * 1e3;
    assert!(verdict.is_some(), "a copy of bash must be recognised");
    let hit = ns_per(EXECS, |_| {
        black_box(catalog.judge(&proc, 1, copy.to_str(), black_box(&copy_id)));
    });
    // A new copy each time: hashing bash's size of bytes, cold for the catalog.
    let cold = (0..PASSES)
        .map(|i| {
            let p = dir.join(format!("copy{i}"));
            fs::copy("/usr/bin/bash", &p).expect("copy bash");
            let id = file_id(&fs::metadata(&p).expect("copy"));
            let t = Instant::now();
            assert!(catalog.judge(&proc, 1, p.to_str(), &id).is_some());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let cold_ms = median(cold);

    // The table's exec handling (path globs, loader check, identity) for /usr/bin/true.
    let mut table = ProcessTable::new(65_536, Path::new("/nonexistent-proc"));
    table.set_programs(programs.clone(), Catalog::resolve(&programs.lists()));
    let exec_ns = ns_per(EXECS, |i| {
        let mut e = Exec {
            origin: Origin {
                kind: EventKind::Exec,
                ktime_ns: u64::from(i),
                tid: 1000 + i % 30_000,
                tgid: 1000 + i % 30_000,
                ppid: 1,
                uid: 0,
                gid: 0,
                euid: Some(0),
                cgroup_id: 1,
                comm: "true".into(),
                hook: Some(monitor_common::Hook::TracepointSchedProcessExec),
            },
            old_tid: 0,
            filename: "/usr/bin/true".into(),
            filename_truncated: false,
            exe: Some("/usr/bin/true".into()),
            exe_truncated: false,
            argv: vec!["true".into()],
            argv_truncated: false,
            file: Some(true_id),
        };
        e.old_tid = e.origin.tid;
        table.on_exec(black_box(&e));
    });
    let _ = fs::remove_dir_all(&dir);

    println!("| measure | figure |");
    println!("|---|---|");
    println!("| catalog at start ({catalogued} binaries) | {resolve_ms:.1} ms |");
    println!("| verdict, no catalogued size (`/usr/bin/true`) | {miss:.0} ns |");
    println!("| verdict, a copy of bash already hashed (cache hit) | {hit:.0} ns |");
    println!(
        "| first verdict on the first copy of bash (hashes it and the catalogued bash) | {first_ms:.2} ms |"
    );
    println!("| first verdict on a later new copy (hashes the copy only) | {cold_ms:.2} ms |");
    println!(
        "| process table `on_exec` of `/usr/bin/true`, default policy lists | {exec_ns:.0} ns |"
    );
    println!(
        "\nhashed {} files, {} cache hits",
        catalog.stats().hashed,
        catalog.stats().cache_hits
    );
}
