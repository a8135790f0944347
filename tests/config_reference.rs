//! docs/configuration.md against the code: every key the config has is in the reference's tables and every key
//! the tables list exists, each with the default the code gives it (or `required` exactly where the code
//! requires the key).

use std::collections::BTreeMap;

use harness::config::ExperimentConfig;
use serde_yaml::Value;

mod common;

/// The minimal config: only what the code requires, plus `num_labels` (one of `labels`/`num_labels` is needed).
const MIN: &str = "name: t\ntasks:\n  - name: a\n    train: x.tsv\n    eval: y.tsv\n    num_labels: 2\n";

fn load(text: &str) -> anyhow::Result<ExperimentConfig> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("c.yaml");
    std::fs::write(&p, text).unwrap();
    ExperimentConfig::load(&p, &[])
}

/// Every key of a resolved config with its value; a list contributes its first item as `key[]`.
fn flatten(v: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    if !prefix.is_empty() && !prefix.ends_with("[]") {
        out.insert(prefix.to_string(), v.clone());
    }
    match v {
        Value::Mapping(m) => {
            for (k, v) in m {
                let k = k.as_str().unwrap();
                let key = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &key, out);
            }
        }
        Value::Sequence(s) if !s.is_empty() && s[0].is_mapping() => flatten(&s[0], &format!("{prefix}[]"), out),
        _ => {}
    }
}

fn code_keys() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let plain = load(MIN).unwrap();
    flatten(&serde_yaml::to_value(&plain).unwrap(), "", &mut out);
    // an mlp head's keys, with their defaults
    let mlp = load(&format!("{MIN}    head: {{type: mlp}}\n")).unwrap();
    let mut m = BTreeMap::new();
    flatten(&serde_yaml::to_value(&mlp).unwrap(), "", &mut m);
    out.extend(
        m.into_iter()
            .filter(|(k, _)| k.starts_with("tasks[].head.") && k != "tasks[].head.type"),
    );
    // keys the serializer leaves out when unset
    out.insert("base_name".into(), Value::Null);
    out.insert("probes".into(), Value::Sequence(Vec::new()));
    out.insert("analysis.drift".into(), Value::Null);
    let measured = load(&format!("{MIN}{MEASURED}")).unwrap();
    let mut m = BTreeMap::new();
    flatten(&serde_yaml::to_value(&measured).unwrap(), "", &mut m);
    out.extend(
        m.into_iter()
            .filter(|(k, _)| k.starts_with("probes[].") || k.starts_with("analysis.drift.")),
    );
    out
}

/// A probe and drift with only their required keys.
const MEASURED: &str = "probes:\n  - name: p\n    data: p.tsv\nanalysis:\n  drift:\n    data: d.tsv\n";

/// (key, default cell) of every row of the reference's tables.
fn doc_rows() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(common::root().join("docs/configuration.md")).unwrap();
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.strip_prefix("| `")?.splitn(3, " | ").collect();
            let key = cells[0].strip_suffix('`')?;
            Some((key.to_string(), cells.get(1)?.trim().to_string()))
        })
        .collect()
}

/// Keys of MIN: whether the code requires each (the config without it fails for a missing field).
fn required(key: &str) -> bool {
    let measured = match key {
        "probes[].name" => Some("  - name: p\n"),
        "probes[].data" => Some("    data: p.tsv\n"),
        "analysis.drift.data" => Some("    data: d.tsv\n"),
        _ => None,
    };
    if let Some(line) = measured {
        let text = format!(
            "{MIN}{}",
            // what is left of the section stays a mapping, so the key is missing rather than the section null
            MEASURED.replacen(
                line,
                match key {
                    "probes[].name" => "  - \n",
                    "analysis.drift.data" => "    column: c\n",
                    _ => "",
                },
                1
            )
        );
        return load(&text).is_err_and(|e| format!("{e:#}").contains("missing field"));
    }
    let line = match key {
        "name" => "name: t\n",
        "tasks" => return load("name: t\n").is_err_and(|e| format!("{e:#}").contains("missing field `tasks`")),
        "tasks[].name" => "  - name: a\n",
        "tasks[].train" => "    train: x.tsv\n",
        "tasks[].eval" => "    eval: y.tsv\n",
        "tasks[].num_labels" => "    num_labels: 2\n",
        _ => return false,
    };
    let text = MIN.replacen(line, if key == "tasks[].name" { "  - \n" } else { "" }, 1);
    load(&text).is_err_and(|e| format!("{e:#}").contains("missing field"))
}

#[test]
fn every_key_and_default_is_in_the_reference() {
    let code = code_keys();
    let docs = doc_rows();
    assert!(docs.len() > 40, "{docs:?}");
    let doc_keys: Vec<&str> = docs.iter().map(|(k, _)| k.as_str()).collect();
    let missing: Vec<&String> = code.keys().filter(|k| !doc_keys.contains(&k.as_str())).collect();
    assert!(
        missing.is_empty(),
        "keys the code has and docs/configuration.md lacks: {missing:?}"
    );
    let unknown: Vec<&&str> = doc_keys.iter().filter(|k| !code.contains_key(**k)).collect();
    assert!(
        unknown.is_empty(),
        "keys docs/configuration.md lists and the code does not have: {unknown:?}"
    );
    let given = [
        "name",
        "tasks",
        "tasks[].name",
        "tasks[].train",
        "tasks[].eval",
        "tasks[].num_labels",
        "probes[].name",
        "probes[].data",
        "analysis.drift.data",
    ];
    for (key, cell) in &docs {
        if given.contains(&key.as_str()) {
            assert_eq!(cell == "required", required(key), "`{key}`: the reference says {cell}");
            if key == "tasks[].num_labels" {
                assert_eq!(cell, "`null`");
            }
            continue;
        }
        let value = &code[key];
        if value.is_mapping() {
            continue; // a section row: its keys have rows of their own
        }
        let doc: Value = serde_yaml::from_str(cell.trim_matches('`')).unwrap();
        assert_eq!(
            &doc, value,
            "`{key}`: the reference says {cell}, the code's default is {value:?}"
        );
    }
}

#[test]
fn the_check_sees_a_wrong_default() {
    // the comparison itself: a reference claiming another default would not pass
    let code = code_keys();
    let doc: Value = serde_yaml::from_str("3e-5").unwrap();
    assert_ne!(&doc, &code["train.lr_encoder"]);
    let doc: Value = serde_yaml::from_str("2e-5").unwrap();
    assert_eq!(&doc, &code["train.lr_encoder"]);
    assert!(required("name") && required("tasks[].train") && !required("tasks[].num_labels"));
}
