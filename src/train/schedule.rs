//! The learning-rate schedule (linear warmup, then linear decay, as transformers has it), layer-wise decay's
//! scale per encoder group, and the seeds derived from the run seed, so that every epoch's batch plan and
//! every step's dropout masks are reproducible.

use crate::model::group::Group;

/// The learning-rate multiplier at optimizer step `step` (0-based) of `total`, exactly as
/// transformers' `get_linear_schedule_with_warmup` gives it: `step / warmup` during warmup (so the first
/// step of a warmed-up run has learning rate 0), then linear decay to 0 at `total`.
pub fn lr_factor(step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        step as f64 / warmup.max(1) as f64
    } else {
        (total.saturating_sub(step) as f64 / total.saturating_sub(warmup).max(1) as f64).max(0.0)
    }
}

/// The learning-rate scale of an encoder group under layer-wise decay `d` with `layers` layers, as MAE's
/// `param_groups_lrd` (util/lr_decay.py, following BEiT) gives it: the embeddings are layer id 0, layer i is
/// id i + 1, and id j has scale d^(L + 1 - j); so layer i trains at d^(L - i) (the top layer at d) and the
/// embeddings at d^(L + 1). The heads (MAE's id L + 1, scale 1) keep `lr_heads`; the pooler never trains.
pub(crate) fn layer_lr_scale(group: &Group, d: f64, layers: usize) -> f64 {
    let id = match group {
        Group::Embeddings => 0,
        Group::Layer(i) => i + 1,
        Group::Pooler | Group::Head(_) => layers + 1,
    };
    d.powf((layers + 1 - id.min(layers + 1)) as f64)
}

/// A 64-bit mix of the run seed and a counter (SplitMix64), so per-epoch and per-step seeds are unrelated.
pub(crate) fn mix(seed: u64, k: u64) -> u64 {
    let mut z = seed ^ k.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_decay_follows_mae_param_groups_lrd() {
        // MAE util/lr_decay.py for 2 blocks: num_layers = 3, layer_scales = [d**(3 - i) for i in range(4)],
        // embeddings id 0, blocks.i id i + 1, the rest id 3
        let d: f64 = 0.8;
        let scales: Vec<f64> = (0..4).map(|i| d.powf((3 - i) as f64)).collect();
        assert_eq!(layer_lr_scale(&Group::Embeddings, d, 2), scales[0]);
        assert_eq!(layer_lr_scale(&Group::Layer(0), d, 2), scales[1]);
        assert_eq!(layer_lr_scale(&Group::Layer(1), d, 2), scales[2]);
        assert_eq!(layer_lr_scale(&Group::Head("a".into()), d, 2), 1.0);
        assert_eq!((scales[0], scales[2]), (0.8f64.powf(3.0), 0.8));
        assert!([Group::Embeddings, Group::Layer(0)]
            .iter()
            .all(|g| layer_lr_scale(g, 1.0, 2) == 1.0));
    }

    #[test]
    fn lr_schedule_is_transformers_linear_with_warmup() {
        // transformers 4.46.3: get_linear_schedule_with_warmup(opt, 3, 10), lr before each of 11 steps
        let want = [
            0.0,
            1.0 / 3.0,
            2.0 / 3.0,
            1.0,
            6.0 / 7.0,
            5.0 / 7.0,
            4.0 / 7.0,
            3.0 / 7.0,
            2.0 / 7.0,
            1.0 / 7.0,
            0.0,
        ];
        for (s, w) in want.iter().enumerate() {
            assert!((lr_factor(s, 3, 10) - w).abs() < 1e-15, "step {s}");
        }
        assert_eq!(lr_factor(0, 0, 4), 1.0);
        assert_eq!(lr_factor(12, 3, 10), 0.0);
    }

    #[test]
    fn seeds_mix_apart() {
        assert_ne!(mix(1, 1), mix(1, 2));
        assert_ne!(mix(1, 2), mix(2, 1));
        assert_eq!(mix(7, 3), mix(7, 3));
    }
}
