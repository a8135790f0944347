//! Like with like: runs that `compare` merges as seeds of one configuration must have the same resolved
//! config (`config.yaml`) but for the keys that only name or place a run, or pick its seed. Anything else
//! (a learning rate, a task's data, the encoder) makes them different experiments, and averaging them would
//! report a mean of two things as the spread of one.

use serde_yaml::Value;

/// Keys that may differ between seeds of one configuration: the seed, and the run's name and place (a
/// sweep names each seed's run; `base_name` is what groups them), and when it checkpoints.
pub(crate) const FREE_KEYS: [&str; 5] = [
    "seed",
    "name",
    "base_name",
    "output_dir",
    "train.checkpoint_every_steps",
];

/// Every key path (`train.lr_encoder`, `tasks.0.train`) at which `a` and `b` differ, `FREE_KEYS` aside.
pub(crate) fn differing_keys(a: &Value, b: &Value) -> Vec<String> {
    let mut out = differences(a, b);
    out.retain(|k| !FREE_KEYS.contains(&k.as_str()));
    out
}

/// Every key path at which `a` and `b` differ, in key order (`(config)` when they differ at the top).
pub(crate) fn differences(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(a, b, "", &mut out);
    out
}

fn walk(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (a, b) {
        (Value::Mapping(x), Value::Mapping(y)) => {
            let mut keys: Vec<String> = x
                .keys()
                .chain(y.keys())
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (x.get(k.as_str()), y.get(k.as_str())) {
                    (Some(p), Some(q)) => walk(p, q, &join(&k), out),
                    _ => out.push(join(&k)),
                }
            }
        }
        (Value::Sequence(x), Value::Sequence(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                walk(p, q, &join(&i.to_string()), out);
            }
        }
        _ if a == b => {}
        _ => out.push(if path.is_empty() {
            "(config)".into()
        } else {
            path.to_string()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn only_the_seed_and_the_run_s_name_and_place_may_differ() {
        let a = yaml("name: a-seed1\nseed: 1\noutput_dir: x\ntrain: {lr: 1, epochs: 2}\ntasks: [{train: t.tsv}]");
        let b = yaml("name: a-seed2\nseed: 2\noutput_dir: y\ntrain: {lr: 1, epochs: 2}\ntasks: [{train: t.tsv}]");
        assert!(differing_keys(&a, &b).is_empty());
        let c = yaml("name: a\nseed: 1\noutput_dir: x\ntrain: {lr: 2, epochs: 2, extra: 1}\ntasks: [{train: u.tsv}]");
        assert_eq!(differing_keys(&a, &c), ["tasks.0.train", "train.extra", "train.lr"]);
    }
}
