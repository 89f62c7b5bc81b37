//! `berthash tokenize`: token ids of texts, one JSON array per input line, exactly as training
//! sees them (for comparing with other tokenizer implementations).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct TokenizeArgs {
    /// A file with one text per line (`-` for standard input). With --pairs, two tab-separated
    /// texts per line.
    #[arg(long)]
    pub input: PathBuf,
    /// Encode `text_a<TAB>text_b` pairs (`[CLS] a [SEP] b [SEP]`); prints ids and type ids.
    #[arg(long)]
    pub pairs: bool,
    /// Leave out [CLS]/[SEP].
    #[arg(long)]
    pub no_special_tokens: bool,
    /// tokenizer.json to use (default: the embedded bert-base-uncased).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
}

pub fn run(args: TokenizeArgs) -> anyhow::Result<()> {
    let tokenizer = crate::tokenizer::load(args.tokenizer.as_deref(), None)?;
    let reader: Box<dyn BufRead> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("opening {}", args.input.display()))?;
        Box::new(std::io::BufReader::new(file))
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("{}: line {}", args.input.display(), n + 1))?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        let json = if args.pairs {
            let (a, b) = line.split_once('\t').with_context(|| {
                format!(
                    "{}: line {}: expected two tab-separated texts",
                    args.input.display(),
                    n + 1
                )
            })?;
            let encoding = tokenizer
                .tokenizer()
                .encode((a, b), !args.no_special_tokens)
                .map_err(|e| anyhow::anyhow!("{}: line {}: {e}", args.input.display(), n + 1))?;
            serde_json::json!({"input_ids": encoding.get_ids(), "token_type_ids": encoding.get_type_ids()})
        } else {
            serde_json::json!(tokenizer.encode(line, !args.no_special_tokens)?)
        };
        writeln!(out, "{json}")?;
    }
    Ok(())
}
