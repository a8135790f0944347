//! Pair data, the one reader of sentence rows: the sentence columns of an sts or pairs task, an STS probe or
//! `eval-sts` (two or three per row, or drift's one), and a gold score per row where there is a score column:
//! scaled from its declared range to 0..1 for a task, as the file has it for a probe or `eval-sts` (their
//! correlations do not depend on the scale).
//!
//! Invariants: every error names the file and, for a row, its line and column: a missing column (with the
//! columns the file has), an empty sentence, a score that is not a finite number or lies outside the range, a
//! file without rows. The scaled score is (s - lo) / (hi - lo), as sentence-transformers' STS-B examples divide
//! by 5.

use std::path::Path;

use anyhow::{bail, Result};

use crate::data::table::Table;

/// A score column and the range its values must lie in (`None`: any finite number, kept as it is).
pub(crate) struct ScoreColumn<'a> {
    pub name: &'a str,
    pub range: Option<[f64; 2]>,
}

/// The rows of one split of a pair task.
#[derive(Debug, Clone)]
pub(crate) struct PairData {
    /// one vector of sentences per column, in the order the columns were asked for
    pub columns: Vec<Vec<String>>,
    /// the gold scores, in 0..1 where the column has a range (empty without a score column)
    pub scores: Vec<f64>,
}

impl PairData {
    /// The first `limit` rows (all: None).
    pub(crate) fn read(
        path: &Path,
        columns: &[&str],
        score: Option<ScoreColumn>,
        limit: Option<usize>,
    ) -> Result<Self> {
        let table = Table::read(path)?;
        let at: Vec<usize> = columns.iter().map(|c| table.column(c)).collect::<Result<_>>()?;
        let score_at = score.as_ref().map(|s| table.column(s.name)).transpose()?;
        let mut out = PairData {
            columns: vec![Vec::new(); columns.len()],
            scores: Vec::new(),
        };
        for (line, row) in table.rows.iter().take(limit.unwrap_or(usize::MAX)) {
            let cell = |name: &str| format!("{}:{line}: column `{name}`", path.display());
            for ((name, &j), col) in columns.iter().zip(&at).zip(&mut out.columns) {
                if row[j].trim().is_empty() {
                    bail!("{}: the sentence is empty", cell(name));
                }
                col.push(row[j].clone());
            }
            if let (Some(s), Some(j)) = (&score, score_at) {
                out.scores
                    .push(scaled(&row[j], s).map_err(|e| anyhow::anyhow!("{}: {e}", cell(s.name)))?);
            }
        }
        if out.columns.first().is_none_or(Vec::is_empty) {
            bail!("{}: no rows (the dataset is empty)", path.display());
        }
        Ok(out)
    }

    pub(crate) fn len(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }
}

/// A score cell as a number, in 0..1 of its range where it has one.
fn scaled(cell: &str, s: &ScoreColumn) -> std::result::Result<f64, String> {
    let v: f64 = cell.trim().parse().map_err(|_| format!("`{cell}` is not a number"))?;
    if !v.is_finite() {
        return Err(format!("`{}` is not a finite number", cell.trim()));
    }
    let Some([lo, hi]) = s.range else {
        return Ok(v);
    };
    if v < lo || v > hi {
        return Err(format!("{v} is outside score_range [{lo}, {hi}]"));
    }
    Ok((v - lo) / (hi - lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str, range: [f64; 2]) -> Result<PairData> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("p.tsv");
        std::fs::write(&p, body).unwrap();
        let score = ScoreColumn {
            name: "score",
            range: Some(range),
        };
        PairData::read(&p, &["s1", "s2"], Some(score), None)
    }

    #[test]
    fn scores_are_scaled_and_bad_cells_name_their_line() {
        let d = read("s1\ts2\tscore\na\tb\t5\nc\td\t1.25\n", [0.0, 5.0]).unwrap();
        assert_eq!(d.scores, vec![1.0, 0.25]);
        assert_eq!(d.columns[1], vec!["b", "d"]);
        let e = format!(
            "{:#}",
            read("s1\ts2\tscore\na\tb\t5\nc\td\t6\n", [0.0, 5.0]).unwrap_err()
        );
        assert!(
            e.contains("p.tsv:3: column `score`: 6 is outside score_range [0, 5]"),
            "{e}"
        );
        let e = format!("{:#}", read("s1\ts2\tscore\na\tb\tx\n", [0.0, 5.0]).unwrap_err());
        assert!(e.contains("p.tsv:2: column `score`: `x` is not a number"), "{e}");
        let e = format!("{:#}", read("s1\ts2\tscore\na\t \t1\n", [0.0, 5.0]).unwrap_err());
        assert!(e.contains("p.tsv:2: column `s2`: the sentence is empty"), "{e}");
        let e = format!("{:#}", read("s1\tscore\na\t1\n", [0.0, 5.0]).unwrap_err());
        assert!(e.contains("p.tsv: no column `s2`"), "{e}");
    }
}
