//! `berthash embed`: sentence embeddings of texts given on the command line or in a file (one
//! a line, or a parquet / JSONL column), as JSONL or safetensors, or a cosine-similarity table.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use berthash_data::columns::read_columns;
use berthash_model::weights::{RawTensor, TensorFile};
use berthash_train::embed::{EmbedOptions, Embedder, Embeddings, Pooling};
use berthash_train::resolve_model;
use berthash_train::sentence_transformers::SentenceConfig;
use burn::backend::Flex;

#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// A model: a model dir, a run (its best or final model) or a checkpoint; any head is ignored.
    #[arg(long)]
    pub model: PathBuf,
    /// Texts, one per line; `.parquet` and `.jsonl` files give theirs in `--column`.
    #[arg(long, conflicts_with = "texts")]
    pub input: Option<PathBuf>,
    /// The text column of a `.parquet` or `.jsonl` input (default `text`).
    #[arg(long, requires = "input")]
    pub column: Option<String>,
    /// Texts to embed.
    #[arg(required_unless_present = "input")]
    pub texts: Vec<String>,
    /// mean, cls or max, over the positions the attention mask keeps (special tokens included)
    /// [default: the model's sentence-transformers pooling, else mean].
    #[arg(long)]
    pub pooling: Option<Pooling>,
    /// Scale each embedding to unit L2 norm (on by default where the model's
    /// sentence-transformers modules normalise).
    #[arg(long)]
    pub normalize: bool,
    /// Longer texts are truncated to this many tokens [default: the model's sentence-transformers
    /// max_seq_length, else 128, or the model's positions when fewer].
    #[arg(long)]
    pub max_seq_length: Option<usize>,
    /// Texts per forward pass (sorted by length, so each batch pads little).
    #[arg(long, default_value_t = 64, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub batch_size: usize,
    /// `.jsonl` (`{"text", "embedding"}` per text, in order) or `.safetensors` (`embeddings`,
    /// `[n, hidden]`); without it, JSONL goes to stdout unless --similarity is given.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print the cosine similarity of every pair of texts as a table.
    #[arg(long)]
    pub similarity: bool,
    /// tokenizer.json to use instead of the model's (or the embedded bert-base-uncased).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

/// What `--output` writes, from its extension.
enum Format {
    Jsonl,
    Safetensors,
}

fn output_format(path: &Path) -> anyhow::Result<Format> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("jsonl") => Ok(Format::Jsonl),
        Some("safetensors") => Ok(Format::Safetensors),
        _ => bail!(
            "--output {}: unknown format; name it .jsonl or .safetensors",
            path.display()
        ),
    }
}

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    let output = args
        .output
        .as_deref()
        .map(|path| output_format(path).map(|format| (path, format)))
        .transpose()?;
    let texts = match &args.input {
        Some(path) => read_texts(path, args.column.as_deref())?,
        None => {
            if let Some(i) = args.texts.iter().position(|t| t.trim().is_empty()) {
                bail!("text argument {} is empty", i + 1);
            }
            args.texts.clone()
        }
    };
    let dir = resolve_model(&args.model)?;
    let tokenizer = crate::tokenizer::load(args.tokenizer.as_deref(), Some(&dir))?;
    let sentence =
        SentenceConfig::resolve(&dir, args.pooling, args.normalize, args.max_seq_length)?;
    let options = EmbedOptions {
        pooling: sentence.pooling,
        normalize: sentence.normalize,
        max_seq_length: Some(sentence.max_seq_length),
        batch_size: args.batch_size,
    };
    let embedder = Embedder::<Flex>::load(&dir, tokenizer, options, &Default::default())?;
    let embeddings = embedder.embed(&texts)?;
    match output {
        Some((path, Format::Jsonl)) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut out = std::io::BufWriter::new(file);
            write_jsonl(&mut out, &texts, &embeddings)
                .and_then(|()| out.flush())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Some((path, Format::Safetensors)) => {
            let mut file = TensorFile {
                path: path.to_path_buf(),
                ..Default::default()
            };
            let shape = vec![embeddings.len(), embeddings.dim];
            file.tensors.insert(
                "embeddings".to_string(),
                RawTensor::from_f32(shape, &embeddings.values),
            );
            file.write(path)?;
        }
        None if !args.similarity => {
            let stdout = std::io::stdout();
            write_jsonl(&mut stdout.lock(), &texts, &embeddings)?;
        }
        None => {}
    }
    if args.similarity {
        print_similarity(&texts, &embeddings);
    }
    Ok(())
}

fn write_jsonl(
    out: &mut impl Write,
    texts: &[String],
    embeddings: &Embeddings,
) -> std::io::Result<()> {
    /// One output line; serialised directly so each value prints as its shortest f32.
    #[derive(serde::Serialize)]
    struct Line<'a> {
        text: &'a str,
        embedding: &'a [f32],
    }
    for (i, text) in texts.iter().enumerate() {
        let line = Line {
            text,
            embedding: embeddings.row(i),
        };
        serde_json::to_writer(&mut *out, &line)?;
        writeln!(out)?;
    }
    Ok(())
}

/// Rows and columns are the texts' numbers; each row ends with its text.
fn print_similarity(texts: &[String], embeddings: &Embeddings) {
    let header: Vec<String> = (1..=texts.len()).map(|j| format!("{j:>7}")).collect();
    println!("{:>4} {}", "", header.join(" "));
    for (i, text) in texts.iter().enumerate() {
        let cells: Vec<String> = (0..texts.len())
            .map(|j| format!("{:>7.4}", embeddings.cosine(i, j)))
            .collect();
        println!("{:>4} {}  {text}", i + 1, cells.join(" "));
    }
}

/// The texts of `path`: a `column` of a `.parquet` or `.jsonl` file, else its lines. A blank
/// text is an error naming its row, so outputs stay aligned with the input.
fn read_texts(path: &Path, column: Option<&str>) -> anyhow::Result<Vec<String>> {
    let texts = match path.extension().and_then(|e| e.to_str()) {
        Some("parquet" | "jsonl") => {
            let column = column.unwrap_or("text");
            let table = read_columns(path, &[column])?;
            let mut texts = Vec::with_capacity(table.rows.len());
            for (place, mut cells) in table.rows {
                let text = cells.remove(0);
                if text.trim().is_empty() {
                    bail!("{}: {place}: `{column}` is empty", path.display());
                }
                texts.push(text);
            }
            texts
        }
        _ => {
            if column.is_some() {
                bail!(
                    "--column applies to .parquet and .jsonl inputs, not {}",
                    path.display()
                );
            }
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let lines: Vec<String> = text.lines().map(str::to_string).collect();
            if let Some(i) = lines.iter().position(|l| l.trim().is_empty()) {
                bail!("{} line {}: empty text", path.display(), i + 1);
            }
            lines
        }
    };
    if texts.is_empty() {
        bail!("{}: no texts to embed", path.display());
    }
    Ok(texts)
}
