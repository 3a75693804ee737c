//! The daemon's modules import each other one way only (docs/architecture.md): no module of
//! `monitor/src` imports one that imports it back, directly or through others. Reads the sources
//! (`use crate::…` and `crate::…` paths outside comments and test modules); no root needed.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// The top-level module each source file belongs to: `rules/listen.rs` → `rules`.
fn module_of(relative: &Path) -> String {
    let first = relative
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules a file's code (not its comments or tests) names through `crate::`.
fn imports(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let code = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    // `crate::name` anywhere, and the first segment of each entry of `use crate::{a, b::c};`.
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut entry = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(first_segment(&entry));
                        entry.clear();
                        continue;
                    }
                    _ => {}
                }
                entry.push(ch);
            }
            out.insert(first_segment(&entry));
        } else {
            out.insert(first_segment(rest));
        }
    }
    out.remove("");
    out.remove("self");
    out
}

fn first_segment(path: &str) -> String {
    path.trim()
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src");
            let module = module_of(relative);
            // The crate roots and the test builders see everything by design.
            if ["lib", "main", "testing"].contains(&module.as_str()) {
                continue;
            }
            let text = fs::read_to_string(&path).expect("readable source");
            let targets = edges.entry(module.clone()).or_default();
            targets.extend(imports(&text).into_iter().filter(|t| *t != module));
        }
    }
    edges
}

/// A cycle reachable from `node`, if there is one.
fn cycle(
    edges: &BTreeMap<String, BTreeSet<String>>,
    node: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|p| p == node) {
        let mut found = path[i..].to_vec();
        found.push(node.to_owned());
        return Some(found);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.to_owned());
    for next in edges.get(node).into_iter().flatten() {
        if let Some(found) = cycle(edges, next, path, done) {
            return Some(found);
        }
    }
    path.pop();
    done.insert(node.to_owned());
    None
}

#[test]
fn modules_import_each_other_one_way_only() {
    let edges = graph();
    assert!(edges.len() > 10, "too few modules found: {edges:?}");
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        if let Some(found) = cycle(&edges, node, &mut Vec::new(), &mut done) {
            panic!("import circle: {}\nedges: {edges:#?}", found.join(" -> "));
        }
    }
}

#[test]
fn the_scanner_sees_grouped_and_plain_imports() {
    let found = imports(
        "use crate::{\n    decode::{self, Origin},\n    record::Record,\n};\nfn f() { crate::clock::now(); }\n// crate::output in a comment\n#[cfg(test)]\nmod tests { use crate::daemon; }\n",
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["clock", "decode", "record"]
    );
}
