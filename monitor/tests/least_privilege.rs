//! What docs/security.md promises of the daemon's code: it executes nothing, and only the output
//! queue opens files for writing. Reads the sources (outside comments and test modules), like
//! `architecture.rs`; no root needed.

use std::{fs, path::Path};

/// Each source file's code: text before its first `#[cfg(test)]`, comment lines left out.
fn sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("src dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                // Compiled for the unit tests only (`#[cfg(test)] mod testing;` in lib.rs).
                && path.file_name().is_some_and(|n| n != "testing.rs")
            {
                let text = fs::read_to_string(&path).expect("source");
                let code = text
                    .split("#[cfg(test)]")
                    .next()
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect::<Vec<_>>()
                    .join("\n");
                let name = path
                    .strip_prefix(&root)
                    .expect("under src")
                    .display()
                    .to_string();
                out.push((name, code));
            }
        }
    }
    out.sort();
    assert!(out.len() > 30, "sources not found: {out:?}");
    out
}

#[test]
fn the_daemon_executes_nothing() {
    const EXECUTES: [&str; 7] = [
        "process::Command",
        "Command::new",
        "libc::fork",
        "libc::exec",
        "libc::posix_spawn",
        "libc::system",
        "CommandExt",
    ];
    for (file, code) in sources() {
        for needle in EXECUTES {
            assert!(
                !code.contains(needle),
                "monitor/src/{file} uses `{needle}`: the daemon must execute nothing (docs/security.md)"
            );
        }
    }
}

#[test]
fn only_the_output_queue_opens_files_for_writing() {
    const WRITES: [&str; 8] = [
        "OpenOptions",
        "File::create",
        "fs::write",
        "create_dir",
        "remove_file",
        "fs::rename",
        "set_permissions",
        "libc::open",
    ];
    let allowed = "output/queue.rs";
    let mut seen_in_queue = false;
    // `OpenOptions` also opens files for reading without blocking on a FIFO (O_NONBLOCK, the IP
    // list and shell list readers): it is a write only with one of these.
    const WRITE_FLAGS: [&str; 4] = [
        ".write(true)",
        ".append(true)",
        ".create(true)",
        ".truncate(true)",
    ];
    for (file, code) in sources() {
        for needle in WRITES {
            if !code.contains(needle) {
                continue;
            }
            if needle == "OpenOptions" && !WRITE_FLAGS.iter().any(|flag| code.contains(flag)) {
                continue;
            }
            if file == allowed && needle == "OpenOptions" {
                seen_in_queue = true;
                continue;
            }
            panic!(
                "monitor/src/{file} uses `{needle}`: only {allowed} may open files for writing (docs/security.md)"
            );
        }
    }
    assert!(
        seen_in_queue,
        "{allowed} no longer opens --output: update this test"
    );
}
