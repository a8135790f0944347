//! The shape of the source tree, checked: every file opens with a `//!` contract and every folder's
//! `mod.rs` says what it may import; the import graph (`crate::` paths and `super::` paths of non-test code,
//! and a folder's re-exports) has no cycle between files nor between folders; and each folder imports only
//! folders declared before it in `src/lib.rs`, so data flows one way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every module file under `src` as (module path, file): `a/b.rs` is `a::b`, `a/mod.rs` is `a`.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                walk(&p, &[prefix, &[stem]].concat(), out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let path = match stem.as_str() {
                    "mod" => prefix.to_vec(),
                    "lib" | "main" if prefix.is_empty() => continue,
                    _ => [prefix, &[stem]].concat(),
                };
                out.insert(path.join("::"), p);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, &[], &mut out);
    out
}

/// The longest known module that `path` (segments after `crate::`) starts with.
fn resolve(path: &[&str], known: &BTreeMap<String, PathBuf>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| known.contains_key(m))
}

/// Paths after `crate::`, `super::` or (in a folder's mod.rs) `pub use ` in non-test code, expanded over
/// `{a, b::c}` groups one level deep.
fn referenced_paths(code: &str, module: &str, is_folder: bool) -> Vec<Vec<String>> {
    let here: Vec<String> = module.split("::").filter(|s| !s.is_empty()).map(String::from).collect();
    let parent: Vec<String> = if is_folder {
        here.clone()
    } else {
        here[..here.len().saturating_sub(1)].to_vec()
    };
    let mut out = Vec::new();
    let mut take = |base: Vec<String>, rest: &str| {
        let rest = rest.trim_start();
        let groups: Vec<String> = match rest.strip_prefix('{') {
            Some(g) => g
                .split('}')
                .next()
                .unwrap()
                .split(',')
                .map(|s| s.trim().to_string())
                .collect(),
            None => vec![rest.to_string()],
        };
        for g in groups {
            let segs: Vec<String> = g
                .split("::")
                .map(|s| {
                    s.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|s| !s.is_empty())
                .collect();
            out.push([base.clone(), segs].concat());
        }
    };
    for (i, _) in code.match_indices("crate::") {
        take(Vec::new(), &code[i + "crate::".len()..]);
    }
    for (i, _) in code.match_indices("super::") {
        let up = if is_folder {
            &here[..here.len().saturating_sub(1)]
        } else {
            &parent[..parent.len().saturating_sub(1)]
        };
        take(up.to_vec(), &code[i + "super::".len()..]);
    }
    if is_folder {
        for line in code.lines().filter(|l| l.trim_start().starts_with("pub use ")) {
            let rest = line.trim_start().trim_start_matches("pub use ");
            if !rest.starts_with("crate::") && !rest.starts_with("super::") {
                take(here.clone(), rest.trim_start_matches("self::"));
            }
        }
    }
    out
}

/// Module -> the crate modules its non-test code names (itself excluded). `say!`/`out!` live in `util::say`.
fn file_graph(src: &Path) -> Graph {
    let known = modules(src);
    let mut graph = Graph::new();
    for (m, file) in &known {
        let text = std::fs::read_to_string(file).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let is_folder = file.file_name().unwrap() == "mod.rs";
        let mut deps = BTreeSet::new();
        for p in referenced_paths(code, m, is_folder) {
            let segs: Vec<&str> = p.iter().map(String::as_str).collect();
            let target = match segs.first() {
                Some(&"say") | Some(&"out") | Some(&"out_raw") => Some("util::say".to_string()),
                _ => resolve(&segs, &known),
            };
            if let Some(t) = target.filter(|t| t != m) {
                deps.insert(t);
            }
        }
        graph.insert(m.clone(), deps);
    }
    graph
}

fn folder_of(m: &str) -> String {
    m.split("::").next().unwrap().to_string()
}

/// Folder -> the other folders its files name.
fn folder_graph(files: &Graph) -> Graph {
    let mut g = Graph::new();
    for (m, deps) in files {
        let entry = g.entry(folder_of(m)).or_default();
        entry.extend(deps.iter().map(|d| folder_of(d)).filter(|f| *f != folder_of(m)));
    }
    g
}

fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(m: &str, g: &Graph, stack: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if !done.insert(m.to_string()) {
            return None;
        }
        stack.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

/// Folders bottom up, as the `//! Layers, bottom up:` line of `src/lib.rs` lists them.
fn layer_order(src: &Path) -> Vec<String> {
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let line = lib
        .lines()
        .find_map(|l| l.strip_prefix("//! Layers, bottom up:"))
        .expect("src/lib.rs lists its layers in a `//! Layers, bottom up:` line");
    line.trim()
        .trim_end_matches('.')
        .split(',')
        .map(|s| s.trim().to_string())
        .collect()
}

/// Imports that go up the layers: (folder, folder it names that lib.rs declares after it).
fn upward_imports(folders: &Graph, order: &[String]) -> Vec<(String, String)> {
    let rank = |f: &str| order.iter().position(|o| o == f).unwrap_or(usize::MAX);
    let mut bad = Vec::new();
    for (f, deps) in folders {
        for d in deps.iter().filter(|d| rank(d) > rank(f)) {
            bad.push((f.clone(), d.clone()));
        }
    }
    bad
}

/// Files that do not open with `//!`, and folder contracts (mod.rs) that do not say what they import.
fn missing_contracts(dirs: &[PathBuf]) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                let first = text.lines().find(|l| !l.starts_with("#![")).unwrap_or("");
                if !first.starts_with("//!") {
                    out.push(format!("{} does not open with a //! contract", p.display()));
                }
                let doc: String = text.lines().take_while(|l| l.starts_with("//!")).collect();
                if p.file_name().unwrap() == "mod.rs" && !doc.to_lowercase().contains("import") {
                    out.push(format!(
                        "{}: the folder's contract does not say what it may import",
                        p.display()
                    ));
                }
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        walk(d, &mut out);
    }
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_import_cycle_between_files() {
    let g = file_graph(&root().join("src"));
    assert!(g.len() > 40, "{g:?}");
    assert!(
        g["train::trainer"].contains("train::plan") && g["run::experiment"].contains("train"),
        "{g:?}"
    );
    if let Some(c) = find_cycle(&g) {
        panic!("import cycle between files: {}", c.join(" -> "));
    }
}

#[test]
fn folders_import_only_the_layers_below_them() {
    let src = root().join("src");
    let folders = folder_graph(&file_graph(&src));
    let order = layer_order(&src);
    assert_eq!(order.first().map(String::as_str), Some("util"), "{order:?}");
    assert!(
        folders.keys().all(|f| order.contains(f)),
        "a folder missing from lib.rs's layers: {folders:?}"
    );
    assert_eq!(
        order.len(),
        folders.len(),
        "lib.rs lists a layer that is not a folder: {order:?}"
    );
    if let Some(c) = find_cycle(&folders) {
        panic!("import cycle between folders: {}", c.join(" -> "));
    }
    assert_eq!(
        upward_imports(&folders, &order),
        vec![],
        "folders importing from a later layer; graph: {folders:?}"
    );
}

#[test]
fn every_source_file_opens_with_its_contract() {
    let mut found = missing_contracts(&[root().join("src")]);
    // tests/ has no folders with contracts of their own; its files still open with one
    found.extend(
        missing_contracts(&[root().join("tests")])
            .into_iter()
            .filter(|m| m.contains("does not open")),
    );
    assert_eq!(found, Vec::<String>::new());
}

/// A small tree written into a temporary folder, for the checks to be tried on.
fn planted(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (rel, text) in files {
        let p = d.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    d
}

#[test]
fn a_planted_folder_cycle_is_found() {
    let d = planted(&[
        (
            "lib.rs",
            "//! x\n//! Layers, bottom up: a, b.\npub mod a;\npub mod b;\n",
        ),
        ("a/mod.rs", "//! a. Imports nothing.\npub mod x;\n"),
        ("a/x.rs", "//! x\nuse crate::b::y::Y;\n"),
        ("b/mod.rs", "//! b. Imports a.\npub mod y;\n"),
        ("b/y.rs", "//! y\nuse crate::a::x;\npub struct Y;\n"),
    ]);
    let files = file_graph(d.path());
    assert_eq!(find_cycle(&files).unwrap().join(" -> "), "a::x -> b::y -> a::x");
    let folders = folder_graph(&files);
    assert_eq!(find_cycle(&folders).unwrap().join(" -> "), "a -> b -> a");
    assert_eq!(
        upward_imports(&folders, &layer_order(d.path())),
        vec![("a".to_string(), "b".to_string())]
    );
}

#[test]
fn a_cycle_through_a_reexport_is_found() {
    // b::y names `crate::a::X`, which a/mod.rs re-exports from a::x, which names b::y
    let d = planted(&[
        (
            "lib.rs",
            "//! x\n//! Layers, bottom up: a, b.\npub mod a;\npub mod b;\n",
        ),
        ("a/mod.rs", "//! a. Imports b.\nmod x;\npub use x::X;\n"),
        ("a/x.rs", "//! x\nuse crate::b::y;\npub struct X;\n"),
        ("b/mod.rs", "//! b. Imports a.\npub mod y;\n"),
        ("b/y.rs", "//! y\nuse crate::a::X;\n"),
    ]);
    assert!(find_cycle(&file_graph(d.path())).is_some());
}

#[test]
fn a_planted_missing_contract_is_found() {
    let d = planted(&[
        ("lib.rs", "//! x\npub mod a;\n"),
        ("a/mod.rs", "//! a: owns nothing.\npub mod x;\n"),
        ("a/x.rs", "use std::fs;\n"),
    ]);
    let found = missing_contracts(&[d.path().to_path_buf()]);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().any(|f| f.contains("x.rs does not open")), "{found:?}");
    assert!(found.iter().any(|f| f.contains("say what it may import")), "{found:?}");
}
