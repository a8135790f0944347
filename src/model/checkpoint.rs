//! Checkpoints: the trainable encoder tensors, LoRA's A and B, and every head, as safetensors beside the
//! resolved config.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::Tensor;

use crate::model::freeze::FreezePlan;
use crate::model::group::ParamGroup;
use crate::model::lora::LoraAdapters;
use crate::model::multitask::MultiTaskModel;

pub(crate) const FILE: &str = "checkpoint.safetensors";
/// the best evaluation's weights (`train.keep_best`), beside the final ones
pub(crate) const BEST_FILE: &str = "best.safetensors";

/// The weights a finished run's model is used with (`predict`, `export`): the best evaluation's when the run
/// kept them (its summary's `best.weights`), else the final ones.
pub(crate) fn weights_of(run: &Path, summary: &crate::record::Summary) -> std::path::PathBuf {
    match summary.best.as_ref().and_then(|b| b.weights.as_deref()) {
        Some(file) if file == BEST_FILE => run.join(BEST_FILE),
        _ => run.join(FILE),
    }
}

/// The tensors a checkpoint holds: every trainable encoder tensor and every head. Frozen encoder tensors
/// are left out (they equal the model folder's weights); heads are always kept, frozen ones too, since a
/// frozen head keeps its seeded random initialisation. Shared with the training checkpoints of `resume`.
/// With LoRA, its A and B (`<module>.lora_A.weight`, `<module>.lora_B.weight`) come first.
pub(crate) fn tensors(
    groups: &[ParamGroup],
    plan: &FreezePlan,
    lora: Option<&LoraAdapters>,
) -> Result<Vec<(String, Tensor)>> {
    let mut out: Vec<(String, Tensor)> = lora.map_or_else(Vec::new, |l| {
        l.trainable().into_iter().map(|(n, t)| (n, t.detach())).collect()
    });
    for g in groups {
        if g.group.is_head() {
            out.extend(g.vars.iter().map(|(n, t)| (n.clone(), t.detach())));
        } else {
            out.extend(plan.vars(g, true)?.into_iter().map(|(n, t)| (n, t.detach())));
        }
    }
    Ok(out)
}

/// Writes `tensors(groups, plan)` as safetensors, on the CPU.
pub(crate) fn save(groups: &[ParamGroup], plan: &FreezePlan, lora: Option<&LoraAdapters>, path: &Path) -> Result<()> {
    let cpu: Vec<(String, Tensor)> = tensors(groups, plan, lora)?
        .into_iter()
        .map(|(n, t)| (n, t.to_device(tch::Device::Cpu)))
        .collect();
    crate::model::tensor_file::write(&cpu, path)
}

/// Overwrites the model's tensors with those in the checkpoint (LoRA's A and B too, then W0 + s·B·A is written).
pub(crate) fn load(model: &MultiTaskModel, path: &Path) -> Result<()> {
    let saved: HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .with_context(|| format!("{}: cannot read checkpoint", path.display()))?
        .into_iter()
        .collect();
    let mut found = 0;
    tch::no_grad(|| -> Result<()> {
        for g in model.groups() {
            for (name, mut var) in g.vars {
                if let Some(t) = saved.get(&name) {
                    if t.size() != var.size() {
                        bail!(
                            "{}: `{name}` has shape {:?}, the model expects {:?}",
                            path.display(),
                            t.size(),
                            var.size()
                        );
                    }
                    var.copy_(t);
                    found += 1;
                }
            }
        }
        Ok(())
    })?;
    if let Some(lora) = &model.lora {
        lora.load(&saved).with_context(|| format!("{}", path.display()))?;
        found += lora.trainable().len();
    }
    if found != saved.len() {
        bail!(
            "{}: {} of its tensors do not belong to the model built from config.yaml",
            path.display(),
            saved.len() - found
        );
    }
    Ok(())
}
