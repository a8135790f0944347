//! The shape of the source tree, checked: every module opens with a `//!` contract, and the module
//! import graph (`crate::x` references outside tests) has no cycle, so data flows one way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name -> the crate modules its non-test code names.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files: Vec<_> = std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    let modules: BTreeSet<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut graph = BTreeMap::new();
    for path in &files {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        let mut deps = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            // `crate::a::B` or `crate::{a::B, b}`
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap().split(',').map(|s| s.trim()).collect(),
                None => vec![rest],
            };
            for n in names {
                let m: String = n.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if modules.contains(&m) && m != name {
                    deps.insert(m);
                }
            }
        }
        graph.insert(name, deps);
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == m) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(d, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

#[test]
fn module_imports_have_no_cycle() {
    let graph = import_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 10, "{graph:?}");
    assert!(
        graph["train"].contains("model") && graph["cli"].contains("experiment"),
        "{graph:?}"
    );
    if let Some(c) = find_cycle(&graph) {
        panic!("import cycle: {}", c.join(" -> "));
    }
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let mut g = BTreeMap::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a")] {
        g.insert(a.to_string(), BTreeSet::from([b.to_string()]));
    }
    assert_eq!(find_cycle(&g).unwrap().join(" -> "), "a -> b -> c -> a");
}

#[test]
fn every_source_file_opens_with_its_contract() {
    for dir in ["src", "tests"] {
        for e in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                let first = text.lines().find(|l| !l.starts_with("#![")).unwrap_or("");
                assert!(
                    first.starts_with("//!"),
                    "{} does not open with a //! contract",
                    p.display()
                );
            }
        }
    }
}
