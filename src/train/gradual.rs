//! Gradual unfreezing (`freeze.gradual`, ULMFiT's): in epoch t the heads and the top
//! `start_layers + (t - 1) / add_every_epochs` encoder layers train, one more layer from the top down every
//! `add_every_epochs` epochs, and the embeddings last, in the phase after the bottom layer opens. The freezing
//! plan holds every tensor that trains in some phase (so the optimizer and the checkpoints do); here, at each
//! epoch start, the still-frozen ones lose `requires_grad` and get no gradient, so AdamW skips them entirely (no
//! weight decay, no moments, no step count), and each phase's still-frozen tensors are proven unchanged bit for
//! bit when it ends. Everything derives from the epoch, so a resumed run is in the same phase.

use anyhow::Result;
use tch::Tensor;

use crate::config::GradualConfig;
use crate::model::freeze::{FreezePlan, Snapshot};
use crate::model::group::{Group, ParamGroup};
use crate::train::adamw::AdamW;

pub(crate) struct Unfreezing {
    cfg: GradualConfig,
    layers: usize,
    /// levels open in the current phase (None before the first)
    open: Option<usize>,
    /// which of the optimizer's parameters train in the current phase, in `opt.params()` order
    active: Vec<bool>,
    /// the current phase's frozen tensors (of those the schedule opens) as it began
    frozen: Option<Snapshot>,
    /// frozen tensors that moved during their phase (none in a sound run), and how many were compared
    pub changed: Vec<String>,
    pub checked: usize,
}

impl Unfreezing {
    pub(crate) fn new(cfg: &GradualConfig, layers: usize) -> Self {
        Unfreezing {
            cfg: cfg.clone(),
            layers,
            open: None,
            active: Vec::new(),
            frozen: None,
            changed: Vec::new(),
            checked: 0,
        }
    }

    /// Whether an encoder `group` trains with `open` levels open (layers from the top, then the embeddings).
    fn opens(&self, group: &Group, open: usize) -> bool {
        match group {
            Group::Layer(n) => n + open >= self.layers,
            Group::Embeddings => open > self.layers,
            Group::Pooler | Group::Head(_) => true,
        }
    }

    /// Enters epoch `epoch`'s phase: at a boundary the phase that ends is checked, then `requires_grad` and the
    /// optimizer's mask follow the new one. Nothing changes within a phase.
    pub(crate) fn enter(&mut self, epoch: usize, groups: &[ParamGroup], plan: &FreezePlan, opt: &AdamW) -> Result<()> {
        let open = self.cfg.open_at(epoch, self.layers);
        if self.open == Some(open) {
            return Ok(());
        }
        self.finish(groups);
        let mut frozen = Vec::new();
        for g in groups.iter().filter(|g| !g.group.is_head()) {
            let on = self.opens(&g.group, open);
            for (name, t) in plan.vars(g, true)? {
                let _ = t.set_requires_grad(on);
                if !on {
                    frozen.push((name, t));
                }
            }
        }
        crate::say!(
            "gradual unfreezing: epoch {epoch} trains the top {} of {} layers{}",
            open.min(self.layers),
            self.layers,
            if open > self.layers { " and the embeddings" } else { "" }
        );
        self.frozen = Some(Snapshot::take(frozen));
        // the optimizer's first set is the encoder's (`Trainer::optimizer`), the second the heads'
        self.active = opt.sets[0]
            .slots
            .iter()
            .map(|s| self.opens(&Group::of_encoder_var(&s.name), open))
            .chain(opt.sets[1..].iter().flat_map(|s| s.slots.iter().map(|_| true)))
            .collect();
        self.open = Some(open);
        Ok(())
    }

    /// The encoder groups that no phase of this run opened (every one before the first phase): the plan holds
    /// them because the schedule reaches them in some epoch, but this run's epochs ended first. Layers only
    /// ever open, so the last phase entered (a resumed run's too) opened every group any phase did.
    pub(crate) fn never_opened(&self, groups: &[ParamGroup]) -> Vec<String> {
        groups
            .iter()
            .filter(|g| !g.group.is_head() && !self.open.is_some_and(|o| self.opens(&g.group, o)))
            .map(|g| g.group.to_string())
            .collect()
    }

    /// Ends the current phase: its frozen tensors are compared with their values when it began.
    pub(crate) fn finish(&mut self, groups: &[ParamGroup]) {
        if let Some(snapshot) = self.frozen.take() {
            self.changed.extend(snapshot.changed(groups));
            self.checked += snapshot.len();
        }
    }

    /// The gradients `grads` computes for the parameters that train in this phase, with an undefined tensor
    /// (no update at all) for the others, in `params` order.
    pub(crate) fn masked(
        &self,
        params: &[Tensor],
        grads: impl FnOnce(&[Tensor]) -> Result<Vec<Tensor>>,
    ) -> Result<Vec<Tensor>> {
        let live: Vec<Tensor> = params
            .iter()
            .zip(&self.active)
            .filter(|(_, on)| **on)
            .map(|(p, _)| p.shallow_clone())
            .collect();
        let mut got = grads(&live)?.into_iter();
        Ok(self
            .active
            .iter()
            .map(|on| match on {
                true => got.next().unwrap_or_default(),
                false => Tensor::new(),
            })
            .collect())
    }
}
