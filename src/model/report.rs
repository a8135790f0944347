//! The parameter-group view of a model under a freezing plan: the table `inspect` prints and every run
//! logs, and the per-group record summary.json holds.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::model::freeze::FreezePlan;
use crate::model::group::{Group, ParamGroup};
use crate::model::lora::LoraAdapters;
use crate::record::GroupInfo;

/// Per group its parameters and what trains; with LoRA, a `lora` entry for its adapters (all trainable).
pub(crate) fn group_infos(
    groups: &[ParamGroup],
    plan: &FreezePlan,
    lora: Option<&LoraAdapters>,
) -> Result<BTreeMap<String, GroupInfo>> {
    let adapters = lora.map(|l| {
        let info = GroupInfo {
            params: l.trainable_parameters(),
            trainable: true,
            absent: false,
            trainable_params: None,
        };
        Ok((LORA.to_string(), info))
    });
    groups
        .iter()
        .map(|g| {
            let (trainable, count) = (plan.trains(&g.group)?, plan.trainable_numel(g)?);
            let whole = if trainable { g.numel() } else { 0 };
            Ok((
                g.group.to_string(),
                GroupInfo {
                    params: g.numel(),
                    trainable,
                    absent: g.absent,
                    trainable_params: (count != whole).then_some(count),
                },
            ))
        })
        .chain(adapters)
        .collect()
}

/// The name of LoRA's row in the table and in summary.json's groups.
const LORA: &str = "lora";

/// The table `harness inspect` prints and every run logs: per group its parameters, how many of them
/// train, and whether it trains (`yes`, `no`, or `part` where `freeze.train` picks some of its tensors);
/// with LoRA a last row `lora` for its A and B (LoRA's own `trainable_parameters`).
pub(crate) fn groups_table(groups: &[ParamGroup], plan: &FreezePlan, lora: Option<&LoraAdapters>) -> Result<String> {
    let mut s = format!("{:<24} {:>12} {:>12}  {}\n", "group", "params", "trainable", "trains");
    let (mut total, mut trainable) = (0i64, 0i64);
    for g in groups {
        let count = plan.trainable_numel(g)?;
        let note = if g.absent {
            "  (absent: not in the checkpoint, unused by pooling)"
        } else if g.group == Group::Pooler {
            "  (unused by pooling)"
        } else {
            ""
        };
        let trains = if !plan.trains(&g.group)? {
            "no"
        } else if count == g.numel() {
            "yes"
        } else {
            "part"
        };
        let name = g.group.to_string();
        s.push_str(&format!("{name:<24} {:>12} {count:>12}  {trains}{note}\n", g.numel()));
        total += g.numel();
        trainable += count;
    }
    if let Some(l) = lora {
        let n = l.trainable_parameters();
        let note = format!("  ({} adapted Linear layers, r {})", l.targets().len(), l.config.r);
        s.push_str(&format!("{LORA:<24} {n:>12} {n:>12}  yes{note}\n"));
        total += n;
        trainable += n;
    }
    s.push_str(&format!(
        "{:<24} {:>12}\n{:<24} {:>12}\n",
        "total", total, "trainable", trainable
    ));
    Ok(s)
}
