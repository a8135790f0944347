//! Mean and sample standard deviation over seeds: what every merged number of `compare` is.

use serde::Serialize;

/// Mean and sample standard deviation (`None` for a single value).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Stat {
    pub mean: f64,
    pub std: Option<f64>,
    pub n: usize,
}

impl Stat {
    /// `None` when no value is present; NaN values are skipped.
    pub(crate) fn of(values: impl IntoIterator<Item = f64>) -> Option<Stat> {
        let v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        let n = v.len();
        if n == 0 {
            return None;
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        Some(Stat { mean, std, n })
    }

    /// `mean ± std` (just the mean for one value) with `decimals` decimals.
    pub(crate) fn fmt(&self, decimals: usize) -> String {
        match self.std {
            Some(s) => format!("{:.*} ± {:.*}", decimals, self.mean, decimals, s),
            None => format!("{:.*}", decimals, self.mean),
        }
    }
}
