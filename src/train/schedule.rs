//! The learning-rate schedule (linear warmup, then linear decay, as transformers has it) and the seeds derived
//! from the run seed, so that every epoch's batch plan and every step's dropout masks are reproducible.

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
