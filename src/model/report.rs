//! The parameter-group view of a model under a freezing plan: the table `inspect` prints and every run
//! logs, and the per-group record summary.json holds.

use std::collections::BTreeMap;

use anyhow::Result;

use crate::model::freeze::FreezePlan;
use crate::model::group::{Group, ParamGroup};
use crate::record::GroupInfo;

pub(crate) fn group_infos(groups: &[ParamGroup], plan: &FreezePlan) -> Result<BTreeMap<String, GroupInfo>> {
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
        .collect()
}

/// The table `harness inspect` prints and every run logs: per group its parameters, how many of them
/// train, and whether it trains (`yes`, `no`, or `part` where `freeze.train` picks some of its tensors).
pub(crate) fn groups_table(groups: &[ParamGroup], plan: &FreezePlan) -> Result<String> {
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
    s.push_str(&format!(
        "{:<24} {:>12}\n{:<24} {:>12}\n",
        "total", total, "trainable", trainable
    ));
    Ok(s)
}
