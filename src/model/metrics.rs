//! Metrics: classification (accuracy, macro-F1) and correlation (Pearson, Spearman).

/// Fraction of predictions equal to the gold label.
pub(crate) fn accuracy(pred: &[i64], gold: &[i64]) -> f64 {
    if gold.is_empty() {
        return 0.0;
    }
    pred.iter().zip(gold).filter(|(p, g)| p == g).count() as f64 / gold.len() as f64
}

/// Unweighted mean of per-class F1 over the classes 0..num_labels; a class with no gold and no predicted
/// example counts as F1 0, as scikit-learn does with labels= given.
pub(crate) fn macro_f1(pred: &[i64], gold: &[i64], num_labels: usize) -> f64 {
    if num_labels == 0 {
        return 0.0;
    }
    let mut tp = vec![0usize; num_labels];
    let mut fp = vec![0usize; num_labels];
    let mut fneg = vec![0usize; num_labels];
    for (&p, &g) in pred.iter().zip(gold) {
        if p == g {
            tp[g as usize] += 1;
        } else {
            fp[p as usize] += 1;
            fneg[g as usize] += 1;
        }
    }
    let f1s = (0..num_labels).map(|c| {
        let denom = 2 * tp[c] + fp[c] + fneg[c];
        if denom == 0 {
            0.0
        } else {
            2.0 * tp[c] as f64 / denom as f64
        }
    });
    f1s.sum::<f64>() / num_labels as f64
}

/// Pearson's r; NaN when an input is constant, as scipy.stats.pearsonr returns.
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    // scipy tests constancy exactly: the mean of [0.1; 10] is not 0.1, so the sums alone would not give 0/0
    let constant = |v: &[f64]| v.iter().all(|a| *a == v[0]);
    if x.is_empty() || constant(x) || constant(y) {
        return f64::NAN;
    }
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    // clipped as scipy clips it: rounding can put a perfect correlation at 1 + 2e-16 (NaN stays NaN)
    (sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0)
}

/// Ranks from 1, ties sharing their average rank (scipy.stats.rankdata's default).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            r[order[k]] = avg;
        }
        i = j + 1;
    }
    r
}

pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&ranks(x), &ranks(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f1_and_accuracy_by_hand() {
        let gold = [0, 0, 1, 1, 2];
        let pred = [0, 1, 1, 1, 0];
        assert!((accuracy(&pred, &gold) - 0.6).abs() < 1e-12);
        // class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: 0
        assert!((macro_f1(&pred, &gold, 3) - 1.3 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn spearman_uses_average_ranks() {
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 100.0, 1000.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    }
}
