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
            Ok((
                g.group.to_string(),
                GroupInfo {
                    params: g.numel(),
                    trainable: plan.trains(&g.group)?,
                    absent: g.absent,
                },
            ))
        })
        .collect()
}

/// The table `harness inspect` prints and every run logs.
pub(crate) fn groups_table(groups: &[ParamGroup], plan: &FreezePlan) -> Result<String> {
    let mut s = format!("{:<24} {:>12}  {}\n", "group", "params", "trainable");
    let (mut total, mut trainable) = (0i64, 0i64);
    for g in groups {
        let on = plan.trains(&g.group)?;
        let note = if g.absent {
            "  (absent: not in the checkpoint, unused by pooling)"
        } else if g.group == Group::Pooler {
            "  (unused by pooling)"
        } else {
            ""
        };
        let name = g.group.to_string();
        s.push_str(&format!(
            "{name:<24} {:>12}  {}{note}\n",
            g.numel(),
            if on { "yes" } else { "no" }
        ));
        total += g.numel();
        if on {
            trainable += g.numel();
        }
    }
    s.push_str(&format!(
        "{:<24} {:>12}\n{:<24} {:>12}\n",
        "total", total, "trainable", trainable
    ));
    Ok(s)
}
