//! Text pairs for sentence-embedding training: two text columns and, for scored pairs, a score
//! column, read from a `.tsv`, `.parquet` or `.jsonl` file ([`crate::columns`]). Every text must
//! be non-blank and every score a number inside the stated range; an error names the file, the
//! row and the column. Scores are mapped onto [0, 1].

use std::path::Path;

use crate::columns::read_columns;
use crate::error::{DataError, Result};
use crate::rng::splitmix64;

/// Which columns hold a pair, and the range of its score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairColumns<'a> {
    pub text_a: &'a str,
    pub text_b: &'a str,
    pub score: Option<&'a str>,
    pub score_range: [f64; 2],
}

/// Pairs, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pairs {
    pub a: Vec<String>,
    pub b: Vec<String>,
    /// Scores mapped from `score_range` onto [0, 1]; `None` for unscored pairs.
    pub scores: Option<Vec<f32>>,
}

impl Pairs {
    pub fn len(&self) -> usize {
        self.a.len()
    }

    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }

    /// The pairs at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Pairs {
        Pairs {
            a: indices.iter().map(|&i| self.a[i].clone()).collect(),
            b: indices.iter().map(|&i| self.b[i].clone()).collect(),
            scores: self
                .scores
                .as_ref()
                .map(|s| indices.iter().map(|&i| s[i]).collect()),
        }
    }

    /// Splits off `fraction` of the pairs (at least one, drawn with `seed`) as a held-out set:
    /// `(kept, held_out)`, each in file order.
    pub fn hold_out(&self, fraction: f64, seed: u64) -> (Pairs, Pairs) {
        let n = self.len();
        let held = ((n as f64 * fraction).round() as usize).clamp(1, n.saturating_sub(1).max(1));
        // The pairs with the `held` smallest seeded hashes of their index.
        let mut by_hash: Vec<usize> = (0..n).collect();
        by_hash.sort_by_cached_key(|&i| splitmix64(splitmix64(seed) ^ i as u64));
        let mut chosen = vec![false; n];
        for &i in by_hash.iter().take(held.min(n)) {
            chosen[i] = true;
        }
        let (out, kept): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| chosen[i]);
        (self.select(&kept), self.select(&out))
    }
}

/// Reads the pairs of `path`.
pub fn read_pairs(path: &Path, columns: PairColumns) -> Result<Pairs> {
    let mut names = vec![columns.text_a, columns.text_b];
    names.extend(columns.score);
    let table = read_columns(path, &names)?;
    if table.rows.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
            detail: "no pairs".into(),
        });
    }
    let [low, high] = columns.score_range;
    let mut pairs = Pairs {
        scores: columns.score.map(|_| Vec::with_capacity(table.rows.len())),
        ..Pairs::default()
    };
    for (place, cells) in &table.rows {
        for (column, text) in [columns.text_a, columns.text_b].iter().zip(cells) {
            if text.trim().is_empty() {
                return Err(DataError::Format {
                    path: path.to_path_buf(),
                    message: format!("{place}: `{column}` is empty"),
                });
            }
        }
        if let (Some(scores), Some(column)) = (pairs.scores.as_mut(), columns.score) {
            let value: f64 = cells[2].trim().parse().map_err(|_| DataError::BadScore {
                path: path.to_path_buf(),
                place: place.clone(),
                value: cells[2].clone(),
            })?;
            if !(low..=high).contains(&value) {
                return Err(DataError::Format {
                    path: path.to_path_buf(),
                    message: format!(
                        "{place}: `{column}` {value} is outside the score range [{low}, {high}]"
                    ),
                });
            }
            scores.push(((value - low) / (high - low)) as f32);
        }
        pairs.a.push(cells[0].clone());
        pairs.b.push(cells[1].clone());
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STSB: PairColumns = PairColumns {
        text_a: "sentence1",
        text_b: "sentence2",
        score: Some("score"),
        score_range: [0.0, 5.0],
    };

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_scored_pairs_onto_the_unit_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "train.tsv",
            "index\tsentence1\tsentence2\tscore\n0\ta plane\tan air plane\t5.000\n1\ta man\ta flute\t1.25\n",
        );
        let pairs = read_pairs(&path, STSB).unwrap();
        assert_eq!(pairs.a, ["a plane", "a man"]);
        assert_eq!(pairs.scores, Some(vec![1.0, 0.25]));
        let unscored = read_pairs(
            &path,
            PairColumns {
                score: None,
                ..STSB
            },
        )
        .unwrap();
        assert_eq!(unscored.scores, None);
    }

    #[test]
    fn bad_rows_are_errors_naming_file_row_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let header = "sentence1\tsentence2\tscore\n";
        for (body, expected) in [
            ("a\t \t1\n", "line 2: `sentence2` is empty"),
            (
                "a\tb\t5.5\n",
                "line 2: `score` 5.5 is outside the score range [0, 5]",
            ),
            ("a\tb\t1\nc\td\tx\n", "line 3"),
        ] {
            let path = write(dir.path(), "bad.tsv", &format!("{header}{body}"));
            let err = read_pairs(&path, STSB).unwrap_err().to_string();
            assert!(err.contains("bad.tsv") && err.contains(expected), "{err}");
        }
        let path = write(dir.path(), "empty.tsv", header);
        let err = read_pairs(&path, STSB).unwrap_err().to_string();
        assert!(
            err.contains("empty.tsv") && err.contains("no pairs"),
            "{err}"
        );
    }

    #[test]
    fn held_out_pairs_are_seeded_and_disjoint() {
        let pairs = Pairs {
            a: (0..50).map(|i| format!("a{i}")).collect(),
            b: (0..50).map(|i| format!("b{i}")).collect(),
            scores: Some((0..50).map(|i| i as f32 / 50.0).collect()),
        };
        let (kept, held) = pairs.hold_out(0.1, 7);
        assert_eq!((kept.len(), held.len()), (45, 5));
        assert!(held.a.iter().all(|t| !kept.a.contains(t)));
        assert_eq!(pairs.hold_out(0.1, 7), (kept, held.clone()));
        assert_ne!(pairs.hold_out(0.1, 8).1, held);
    }
}
