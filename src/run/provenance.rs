//! What a run's result depends on outside its folder, recorded so that it is never silently paired with
//! something else later: the encoder's absolute path and weights fingerprint (in `summary.json`'s
//! provenance; `predict` and `export` use the encoder whose fingerprint matches, else refuse), and the data
//! files' fingerprints (`inputs.json`, written when a run starts; `--resume` refuses when a file changed).
//! Runs written before these records existed are used as before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::ExperimentConfig;
use crate::encoder::ModelFolder;
use crate::record::Summary;
use crate::util::fingerprint;

/// The data fingerprints inside a run's folder.
pub(crate) const INPUTS_FILE: &str = "inputs.json";

/// `p` made absolute, symlinks resolved where it exists.
pub(crate) fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// Points `cfg.encoder.model` at the encoder the run was trained on: the recorded absolute path, or the
/// configured one (resolved from here), whichever holds weights with the recorded fingerprint. Neither is
/// one line naming both; a run without a recorded fingerprint keeps its config.
pub(crate) fn pin_encoder(run: &Path, summary: &Summary, cfg: &mut ExperimentConfig) -> Result<()> {
    let (recorded, want) = (&summary.provenance.model_path, &summary.provenance.model_fingerprint);
    if want.is_empty() {
        return Ok(());
    }
    let configured = cfg.encoder.model.clone();
    let mut seen = Vec::new();
    for cand in [recorded.as_str(), configured.as_str()] {
        let Ok(folder) = ModelFolder::open(cand) else {
            seen.push(format!("{cand} is not a model folder here"));
            continue;
        };
        let got = fingerprint::of_files(&folder.weight_files)?;
        if &got == want {
            cfg.encoder.model = cand.to_string();
            return Ok(());
        }
        seen.push(format!(
            "{} holds other weights ({got})",
            absolute(&folder.dir).display()
        ));
    }
    seen.dedup();
    bail!(
        "{}: its heads were trained on the encoder {recorded} (weights {want}), and `encoder.model: {configured}` \
         does not lead to it: {} (restore that encoder, or run from the folder the run was trained in)",
        run.display(),
        seen.join("; ")
    )
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Inputs {
    /// each task's train and eval file, each probe's and drift's, as configured → its fingerprint
    data: BTreeMap<String, String>,
}

fn data_prints(cfg: &ExperimentConfig) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let measured = cfg
        .probes
        .iter()
        .map(|p| &p.data)
        .chain(cfg.analysis.drift.iter().map(|d| &d.data));
    for f in cfg.tasks.iter().flat_map(|t| [&t.train, &t.eval]).chain(measured) {
        {
            let key = f.display().to_string();
            if let std::collections::btree_map::Entry::Vacant(e) = out.entry(key) {
                e.insert(fingerprint::of_file(f)?);
            }
        }
    }
    Ok(out)
}

/// Records the fingerprints of the config's data files in `dir` (a run's `.partial`, when it starts).
pub(crate) fn record_data(dir: &Path, cfg: &ExperimentConfig) -> Result<()> {
    let inputs = Inputs {
        data: data_prints(cfg)?,
    };
    crate::util::fsx::write_atomic(
        &dir.join(INPUTS_FILE),
        serde_json::to_string_pretty(&inputs)?.as_bytes(),
    )
}

/// Refuses to resume the run in `dir` when a data file differs from the one it started with (none recorded:
/// a run from before the record, resumed as before).
pub(crate) fn check_data(dir: &Path, cfg: &ExperimentConfig) -> Result<()> {
    let path = dir.join(INPUTS_FILE);
    if !path.is_file() {
        return Ok(());
    }
    let before: Inputs = serde_json::from_str(&crate::util::fsx::read_text(&path)?)
        .with_context(|| format!("{}: invalid record of the run's data files", path.display()))?;
    for (file, now) in data_prints(cfg)? {
        match before.data.get(&file) {
            Some(then) if then == &now => {}
            Some(then) => bail!(
                "cannot resume: {file} changed since the run started (fingerprint {then}, now {now}); \
                 restore it, or use --restart to start over on the new data"
            ),
            // a file not recorded means the config changed, which check_same_config names
            None => {}
        }
    }
    Ok(())
}
