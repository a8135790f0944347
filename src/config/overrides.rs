//! `--set key.path=value` applied to the parsed YAML, and serde errors explained with the file, the key path and
//! the nearest valid key.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Whether serde's key path (`tasks[0].limit_train`) is the key an override spells (`tasks.0.limit_train`).
pub(super) fn same_key(serde_path: &str, spec: &str) -> bool {
    let spelled = spec.split_once('=').map_or(spec, |(k, _)| k);
    serde_path.replace('[', ".").replace(']', "") == spelled
}

/// `a.b.0.c=value`: the value is parsed as YAML, so numbers, booleans and lists keep their type.
pub(super) fn apply_override(root: &mut serde_yaml::Value, spec: &str) -> Result<()> {
    let (key, raw) = spec
        .split_once('=')
        .with_context(|| format!("--set `{spec}`: expected key.path=value"))?;
    let value: serde_yaml::Value =
        serde_yaml::from_str(raw).with_context(|| format!("--set `{spec}`: value is not valid YAML"))?;
    let mut node = root;
    let parts: Vec<&str> = key.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        node = match node {
            serde_yaml::Value::Sequence(seq) => {
                let idx: usize = part
                    .parse()
                    .with_context(|| format!("--set `{spec}`: `{part}` should be a list index"))?;
                let len = seq.len();
                seq.get_mut(idx)
                    .with_context(|| format!("--set `{spec}`: index {idx} out of range (list has {len})"))?
            }
            serde_yaml::Value::Mapping(map) => {
                let k = serde_yaml::Value::String(part.to_string());
                if !map.contains_key(&k) {
                    map.insert(
                        k.clone(),
                        if last {
                            serde_yaml::Value::Null
                        } else {
                            serde_yaml::Mapping::new().into()
                        },
                    );
                }
                map.get_mut(&k).expect("inserted above")
            }
            serde_yaml::Value::Null => {
                *node = serde_yaml::Mapping::new().into();
                let serde_yaml::Value::Mapping(map) = node else {
                    unreachable!()
                };
                map.entry(serde_yaml::Value::String(part.to_string()))
                    .or_insert(serde_yaml::Value::Null)
            }
            _ => bail!("--set `{spec}`: `{part}` is inside a value that is not a mapping or list"),
        };
    }
    *node = value;
    Ok(())
}

/// serde_yaml's message in plain words (`plain`), with the file name, the line, the key path, and for an
/// unknown key the nearest valid one.
pub(super) fn explain(path: &Path, e: serde_path_to_error::Error<serde_yaml::Error>) -> anyhow::Error {
    let key = e.path().to_string();
    let mut msg = e.inner().to_string();
    let mut at = path.display().to_string();
    if let Some(loc) = e.inner().location() {
        let suffix = format!(" at line {} column {}", loc.line(), loc.column());
        if let Some(m) = msg.strip_suffix(&suffix) {
            msg = m.to_string();
        }
        at = format!("{at}, line {}", loc.line());
    }
    // serde_yaml starts its message with the key path too
    if let Some(m) = msg.strip_prefix(&format!("{key}: ")) {
        msg = m.to_string();
    }
    let shown = super::plain::plain(&msg);
    let mut out = if key == "." {
        format!("{at}: {shown}")
    } else {
        format!("{at}: {key}: {shown}")
    };
    if let Some(rest) = msg.split("unknown field `").nth(1) {
        let unknown = rest.split('`').next().unwrap_or("");
        let expected: Vec<&str> = rest
            .split("expected ")
            .nth(1)
            .unwrap_or("")
            .split('`')
            .skip(1)
            .step_by(2)
            .collect();
        if let Some(best) = expected
            .iter()
            .map(|k| (strsim::jaro_winkler(unknown, k), k))
            .filter(|(s, _)| *s > 0.7)
            .max_by(|a, b| a.0.total_cmp(&b.0))
        {
            out.push_str(&format!(" (did you mean `{}`?)", best.1));
        }
    }
    anyhow::anyhow!(out)
}
