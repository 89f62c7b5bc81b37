//! GLUE-style task descriptions: data, not code.
//!
//! A [`TaskSpec`] says where the texts and the label are in each file layout
//! (the original GLUE tsv and the Hugging Face parquet export), what the labels
//! are (a class list or regression), which metrics to report and which files
//! hold which split. The nine GLUE tasks are shipped as TOML files
//! (`src/glue/builtin/*.toml`) parsed by the same code as a user's own spec.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// A column: a 0-based index (negative counts from the end, `-1` = last) or a
/// header name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Column {
    Index(i64),
    Name(String),
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Column::Index(i) => write!(f, "{i}"),
            Column::Name(n) => write!(f, "`{n}`"),
        }
    }
}

/// What the labels are: classes (their tsv spellings, in class-index order) or
/// a regression score. In TOML: `labels = ["0", "1"]` or `labels = "regression"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "LabelRepr", into = "LabelRepr")]
pub enum LabelSpec {
    Classes(Vec<String>),
    Regression,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum LabelRepr {
    List(Vec<String>),
    Word(String),
}

impl TryFrom<LabelRepr> for LabelSpec {
    type Error = String;
    fn try_from(r: LabelRepr) -> std::result::Result<Self, String> {
        match r {
            LabelRepr::List(l) => Ok(LabelSpec::Classes(l)),
            LabelRepr::Word(w) if w == "regression" => Ok(LabelSpec::Regression),
            LabelRepr::Word(w) => Err(format!(
                "labels must be a list of class names or \"regression\", got \"{w}\""
            )),
        }
    }
}

impl From<LabelSpec> for LabelRepr {
    fn from(l: LabelSpec) -> Self {
        match l {
            LabelSpec::Classes(c) => LabelRepr::List(c),
            LabelSpec::Regression => LabelRepr::Word("regression".to_string()),
        }
    }
}

/// Metrics as `run_glue` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Accuracy,
    F1,
    MatthewsCorrelation,
    Pearson,
    Spearman,
}

impl Metric {
    /// The metric's name in run_glue's results (`eval_` + this).
    pub fn run_glue_name(self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::F1 => "f1",
            Metric::MatthewsCorrelation => "matthews_correlation",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearmanr",
        }
    }
}

/// Where things are in the tab-separated layout (read with no quote handling).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsvLayout {
    /// The first line names the columns.
    #[serde(default = "default_true")]
    pub has_header: bool,
    /// Fields every row must have; by default the header's count, or the first
    /// row's when there is no header.
    #[serde(default)]
    pub num_fields: Option<usize>,
    pub text_a: Column,
    #[serde(default)]
    pub text_b: Option<Column>,
    /// The label column; none in an unlabelled (test) file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Column>,
}

fn default_true() -> bool {
    true
}

/// Column names in a Hugging Face parquet export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetLayout {
    pub text_a: String,
    #[serde(default)]
    pub text_b: Option<String>,
    pub label: String,
    /// Class names in the export's integer order, mapped onto `labels` by name.
    /// Absent: integer `i` is class `i`. Negative integers mean "no label" (as in
    /// unlabelled test splits).
    #[serde(default)]
    pub label_names: Option<Vec<String>>,
}

/// The files of one split: `<tsv>` or `<parquet>.parquet` / `<parquet>-*.parquet`
/// in the task's data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitFiles {
    pub name: String,
    pub tsv: String,
    pub parquet: String,
}

fn default_train() -> SplitFiles {
    SplitFiles {
        name: "train".to_string(),
        tsv: "train.tsv".to_string(),
        parquet: "train".to_string(),
    }
}

fn default_dev() -> Vec<SplitFiles> {
    vec![SplitFiles {
        name: "dev".to_string(),
        tsv: "dev.tsv".to_string(),
        parquet: "validation".to_string(),
    }]
}

/// An unlabelled test split: GLUE's `test.tsv` (its own columns; GLUE numbers its rows
/// 0..n in order, which is the `index` of the leaderboard file) or the Hugging Face export's
/// parquet split (the task's columns, labels -1), and the leaderboard file its predictions go
/// to (`SST-2.tsv`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSplit {
    pub name: String,
    pub tsv: String,
    /// The parquet split's name in a Hugging Face export, if it has one.
    #[serde(default)]
    pub parquet: Option<String>,
    pub text_a: Column,
    #[serde(default)]
    pub text_b: Option<Column>,
    /// The leaderboard file (`SST-2.tsv`); run_glue's `predict_results_<name>.txt` too.
    pub submission: String,
    /// Skipped quietly when absent (GLUE's diagnostic set, AX).
    #[serde(default)]
    pub optional: bool,
}

/// A sentence(-pair) classification or regression task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub name: String,
    pub labels: LabelSpec,
    pub metrics: Vec<Metric>,
    pub tsv: TsvLayout,
    #[serde(default)]
    pub parquet: Option<ParquetLayout>,
    #[serde(default = "default_train")]
    pub train: SplitFiles,
    /// Evaluation splits (MNLI has two).
    #[serde(default = "default_dev")]
    pub dev: Vec<SplitFiles>,
    /// Unlabelled test splits and their leaderboard files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub test: Vec<TestSplit>,
}

/// Which split to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Split {
    Train,
    /// A dev split by name (`dev`, or MNLI's `dev_matched` / `dev_mismatched`).
    Dev(String),
}

impl Split {
    /// The usual single dev split.
    pub fn dev() -> Self {
        Split::Dev("dev".to_string())
    }
}

/// A label of one example.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Label {
    /// Index into the task's class list.
    Class(usize),
    Score(f32),
}

/// One example: a sentence or a pair, and its label when the split has one.
#[derive(Debug, Clone, PartialEq)]
pub struct GlueExample {
    pub text_a: String,
    pub text_b: Option<String>,
    pub label: Option<Label>,
}

/// Names of the built-in tasks.
pub const BUILTIN_TASKS: [&str; 9] = [
    "cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli",
];

/// The spec of a GLUE task by name (`sst2`, `SST-2`, `sts-b`, `MNLI`, …).
pub fn builtin_task(name: &str) -> Option<TaskSpec> {
    let key: String = name
        .chars()
        .filter(|c| !matches!(c, '-' | '_'))
        .collect::<String>()
        .to_lowercase();
    let text = match key.as_str() {
        "cola" => include_str!("builtin/cola.toml"),
        "sst2" => include_str!("builtin/sst2.toml"),
        "mrpc" => include_str!("builtin/mrpc.toml"),
        "stsb" => include_str!("builtin/stsb.toml"),
        "qqp" => include_str!("builtin/qqp.toml"),
        "mnli" => include_str!("builtin/mnli.toml"),
        "qnli" => include_str!("builtin/qnli.toml"),
        "rte" => include_str!("builtin/rte.toml"),
        "wnli" => include_str!("builtin/wnli.toml"),
        _ => return None,
    };
    // The built-in files are tested to parse; `ok()` keeps this panic-free.
    TaskSpec::from_toml_str(text, &format!("builtin:{key}")).ok()
}

impl TaskSpec {
    /// Parses and checks a TOML spec; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let spec: TaskSpec = toml::from_str(text).map_err(|e| DataError::TaskSpec {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        spec.validate().map_err(|message| DataError::TaskSpec {
            path: origin.to_string(),
            message,
        })?;
        Ok(spec)
    }

    /// Reads a TOML spec file.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if let LabelSpec::Classes(classes) = &self.labels {
            if classes.is_empty() {
                return Err("labels: empty class list".to_string());
            }
            for (i, c) in classes.iter().enumerate() {
                if classes[..i].contains(c) {
                    return Err(format!("labels: `{c}` listed twice"));
                }
            }
            if let Some(names) = self.parquet.as_ref().and_then(|p| p.label_names.as_ref()) {
                if let Some(n) = names.iter().find(|n| !classes.contains(n)) {
                    return Err(format!("parquet.label_names: `{n}` is not in labels"));
                }
            }
        }
        if self.metrics.is_empty() {
            return Err("metrics: empty".to_string());
        }
        if self.dev.is_empty() {
            return Err("dev: no dev split".to_string());
        }
        if self.tsv.label.is_none() {
            return Err(
                "tsv: no label column (a task's train and dev files are labelled)".to_string(),
            );
        }
        if !self.tsv.has_header {
            let named = [
                Some(&self.tsv.text_a),
                self.tsv.text_b.as_ref(),
                self.tsv.label.as_ref(),
            ]
            .into_iter()
            .flatten()
            .any(|c| matches!(c, Column::Name(_)));
            if named {
                return Err("tsv: columns can only be named when has_header = true".to_string());
            }
        }
        Ok(())
    }

    /// Number of classes (1 for regression, the model's output size).
    pub fn num_labels(&self) -> usize {
        match &self.labels {
            LabelSpec::Classes(c) => c.len(),
            LabelSpec::Regression => 1,
        }
    }

    pub fn is_regression(&self) -> bool {
        self.labels == LabelSpec::Regression
    }

    /// Whether examples are sentence pairs.
    pub fn is_pair(&self) -> bool {
        self.tsv.text_b.is_some()
    }

    /// The files of a split.
    pub fn split_files(&self, split: &Split) -> Result<&SplitFiles> {
        match split {
            Split::Train => Ok(&self.train),
            Split::Dev(name) => self
                .dev
                .iter()
                .find(|d| &d.name == name || &d.parquet == name)
                .ok_or_else(|| DataError::UnknownSplit {
                    task: self.name.clone(),
                    split: name.clone(),
                    available: self.dev.iter().map(|d| d.name.clone()).collect(),
                }),
        }
    }

    /// The dev split names (`["dev"]`, or MNLI's two).
    pub fn dev_splits(&self) -> Vec<Split> {
        self.dev
            .iter()
            .map(|d| Split::Dev(d.name.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_nine_builtin_tasks_parse() {
        for name in BUILTIN_TASKS {
            let spec = builtin_task(name).unwrap_or_else(|| panic!("{name} parses"));
            assert_eq!(spec.name, name);
        }
        assert_eq!(builtin_task("SST-2").map(|s| s.name), Some("sst2".into()));
        assert_eq!(builtin_task("STS_B").map(|s| s.is_regression()), Some(true));
        assert!(builtin_task("squad").is_none());
        let mnli = builtin_task("mnli").unwrap();
        assert_eq!(mnli.num_labels(), 3);
        assert_eq!(mnli.dev_splits().len(), 2);
        assert!(mnli
            .split_files(&Split::Dev("validation_matched".into()))
            .is_ok());
        let err = mnli.split_files(&Split::dev()).unwrap_err().to_string();
        assert!(err.contains("dev_matched"), "{err}");
    }

    #[test]
    fn unknown_fields_and_bad_labels_are_rejected() {
        let base = "name = \"t\"\nmetrics = [\"accuracy\"]\n[tsv]\ntext_a = 0\nlabel = 1\n";
        let ok = format!("labels = [\"a\", \"b\"]\n{base}");
        let spec = TaskSpec::from_toml_str(&ok, "t.toml").unwrap();
        assert!(!spec.is_pair());
        assert_eq!(spec.split_files(&Split::dev()).unwrap().tsv, "dev.tsv");

        let typo = format!("labels = [\"a\"]\nlabel_colum = 3\n{base}");
        let err = TaskSpec::from_toml_str(&typo, "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.toml") && err.contains("label_colum"),
            "{err}"
        );

        let word = format!("labels = \"classes\"\n{base}");
        assert!(TaskSpec::from_toml_str(&word, "t.toml").is_err());
        let dup = format!("labels = [\"a\", \"a\"]\n{base}");
        assert!(TaskSpec::from_toml_str(&dup, "t.toml").is_err());
        let metric =
            "labels = [\"a\"]\nname = \"t\"\nmetrics = [\"bleu\"]\n[tsv]\ntext_a = 0\nlabel = 1\n";
        assert!(TaskSpec::from_toml_str(metric, "t.toml").is_err());
    }

    #[test]
    fn specs_round_trip_through_toml() {
        let spec = builtin_task("stsb").unwrap();
        let text = toml::to_string(&spec).unwrap();
        assert_eq!(TaskSpec::from_toml_str(&text, "x").unwrap(), spec);
    }
}
