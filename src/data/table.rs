//! Reading datasets: TSV/CSV tables with a header, plain text files, and labelled task data.
//! Every error names the file and, where it applies, the line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::util::lines::{self, Bounded, MAX_LINE_BYTES};

/// A table read whole: the header, and each row with the 1-based line it came from.
pub(crate) struct Table {
    pub path: PathBuf,
    pub headers: Vec<String>,
    pub rows: Vec<(u64, Vec<String>)>,
}

impl Table {
    /// `.csv` files are read with RFC 4180 quoting; anything else as tab-separated with quoting off,
    /// since the shared TSVs contain bare `"` characters.
    pub(crate) fn read(path: &Path) -> Result<Table> {
        let is_csv = path.extension().and_then(|e| e.to_str()) == Some("csv");
        let file = crate::util::fsx::open_regular(path)?;
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(if is_csv { b',' } else { b'\t' })
            .quoting(is_csv)
            .flexible(true)
            .from_reader(Bounded::new(std::io::BufReader::new(file), MAX_LINE_BYTES));
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| csv_error(path, e, ": cannot read the header line"))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        if headers.iter().all(|h| h.is_empty()) {
            bail!("{}: empty file (expected a header line and rows)", path.display());
        }
        // a column is found by its name: a name given twice would silently pick the first
        for (j, h) in headers.iter().enumerate().filter(|(_, h)| !h.is_empty()) {
            if let Some(i) = headers[..j].iter().position(|x| x == h) {
                bail!(
                    "{}:1: column `{h}` appears twice in the header (columns {} and {})",
                    path.display(),
                    i + 1,
                    j + 1
                );
            }
        }
        let mut rows = Vec::new();
        for rec in reader.records() {
            let rec = rec.map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                csv_error(path, e, &format!(":{line}"))
            })?;
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            if rec.len() == 1 && rec[0].is_empty() {
                continue;
            }
            if rec.len() != headers.len() {
                bail!(
                    "{}:{line}: expected {} fields ({}) but found {}",
                    path.display(),
                    headers.len(),
                    headers.join(", "),
                    rec.len()
                );
            }
            rows.push((line, rec.iter().map(str::to_string).collect()));
        }
        Ok(Table {
            path: path.to_path_buf(),
            headers,
            rows,
        })
    }

    pub(crate) fn column(&self, name: &str) -> Result<usize> {
        self.headers.iter().position(|h| h == name).with_context(|| {
            format!(
                "{}: no column `{name}` (columns: {})",
                self.path.display(),
                self.headers.join(", ")
            )
        })
    }
}

/// A CSV error, or a line over `MAX_LINE_BYTES` named by its line; `what` follows the path otherwise (`:3`
/// for a row's line, or what failed).
fn csv_error(path: &Path, e: csv::Error, what: &str) -> anyhow::Error {
    if let csv::ErrorKind::Io(io) = e.kind() {
        if lines::too_long(io).is_some() {
            return lines::read_error(path, io);
        }
    }
    anyhow::anyhow!("{}{what}: {e}", path.display())
}

/// One sentence per non-empty line; a line over `MAX_LINE_BYTES` fails naming it, before it is read whole.
pub(crate) fn read_lines(path: &Path) -> Result<Vec<String>> {
    let file = crate::util::fsx::open_regular(path)?;
    let mut out = Vec::new();
    for line in BufReader::new(Bounded::new(file, MAX_LINE_BYTES)).lines() {
        let line = line.map_err(|e| lines::read_error(path, &e))?;
        if !line.trim().is_empty() {
            out.push(line);
        }
    }
    if out.is_empty() {
        bail!("{}: empty input (expected one sentence per line)", path.display());
    }
    Ok(out)
}

/// How a label cell becomes a class index.
#[derive(Debug, Clone)]
pub enum LabelMap {
    /// integer labels; `offset` is subtracted (AG News is 1..4)
    Integer { offset: i64, num_labels: usize },
    /// label names, in class order
    Names(Vec<String>),
}

impl LabelMap {
    pub fn num_labels(&self) -> usize {
        match self {
            LabelMap::Integer { num_labels, .. } => *num_labels,
            LabelMap::Names(n) => n.len(),
        }
    }

    fn class_of(&self, cell: &str, index: &HashMap<&str, usize>) -> std::result::Result<usize, String> {
        match self {
            LabelMap::Integer { offset, num_labels } => {
                let v: i64 = cell
                    .trim()
                    .parse()
                    .map_err(|_| format!("label `{cell}` is not an integer"))?;
                let c = v - offset;
                if c < 0 || c >= *num_labels as i64 {
                    return Err(format!(
                        "label {v} out of range (expected {}..={} with label_offset {offset})",
                        offset,
                        offset + *num_labels as i64 - 1
                    ));
                }
                Ok(c as usize)
            }
            LabelMap::Names(names) => index
                .get(cell.trim())
                .copied()
                .ok_or_else(|| format!("label `{cell}` is not one of: {}", names.join(", "))),
        }
    }
}

/// Texts and class indices of one split of one task.
#[derive(Debug, Clone)]
pub(crate) struct LabelledData {
    pub texts: Vec<String>,
    pub labels: Vec<i64>,
}

impl LabelledData {
    pub(crate) fn read(
        path: &Path,
        text_col: &str,
        label_col: &str,
        labels: &LabelMap,
        limit: Option<usize>,
    ) -> Result<Self> {
        let table = Table::read(path)?;
        let (ti, li) = (table.column(text_col)?, table.column(label_col)?);
        let index: HashMap<&str, usize> = match labels {
            LabelMap::Names(n) => n.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect(),
            _ => HashMap::new(),
        };
        let mut out = LabelledData {
            texts: Vec::new(),
            labels: Vec::new(),
        };
        for (line, row) in table.rows.iter().take(limit.unwrap_or(usize::MAX)) {
            let class = labels
                .class_of(&row[li], &index)
                .map_err(|e| anyhow::anyhow!("{}:{line}: column `{label_col}`: {e}", path.display()))?;
            if row[ti].trim().is_empty() {
                bail!("{}:{line}: column `{text_col}` is empty", path.display());
            }
            out.texts.push(row[ti].clone());
            out.labels.push(class as i64);
        }
        if out.texts.is_empty() {
            bail!("{}: no rows (the dataset is empty)", path.display());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn reads_tsv_with_quotes_and_offsets() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "t.tsv", "label\ttext\n1\tsays \"hi\n4\tbye\n");
        let lm = LabelMap::Integer {
            offset: 1,
            num_labels: 4,
        };
        let data = LabelledData::read(&p, "text", "label", &lm, None).unwrap();
        assert_eq!(data.texts, vec!["says \"hi", "bye"]);
        assert_eq!(data.labels, vec![0, 3]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "t.tsv", "label\ttext\n1\tok\n9\tbad\n");
        let lm = LabelMap::Integer {
            offset: 1,
            num_labels: 4,
        };
        let e = format!("{:#}", LabelledData::read(&p, "text", "label", &lm, None).unwrap_err());
        assert!(e.contains("t.tsv:3") && e.contains("out of range"), "{e}");
        let p = write(d.path(), "m.tsv", "label\ttext\n1\tok\textra\n");
        let e = format!("{:#}", LabelledData::read(&p, "text", "label", &lm, None).unwrap_err());
        assert!(e.contains("m.tsv:2") && e.contains("expected 2 fields"), "{e}");
        let p = write(d.path(), "n.tsv", "label\ttext\n");
        let e = format!("{:#}", LabelledData::read(&p, "text", "label", &lm, None).unwrap_err());
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn string_labels_map_to_names() {
        let d = tempfile::tempdir().unwrap();
        let p = write(d.path(), "s.csv", "text,label\n\"a, b\",neg\nc,pos\n");
        let lm = LabelMap::Names(vec!["neg".into(), "pos".into()]);
        let data = LabelledData::read(&p, "text", "label", &lm, None).unwrap();
        assert_eq!(data.labels, vec![0, 1]);
        assert_eq!(data.texts[0], "a, b");
    }
}
