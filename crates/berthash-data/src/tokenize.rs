//! Hugging Face `tokenizers` wrapper: loads a local `tokenizer.json`, knows the
//! BERT special ids, and encodes batches of texts in parallel with rayon.
//!
//! Speed: for BERT-style tokenizers (BertNormalizer, BertPreTokenizer,
//! WordPiece) the ids of a text are exactly the ids of its pieces between
//! ASCII whitespace (` `, `\t`, `\n`, `\r`) concatenated: every step of that
//! pipeline works per character or per whitespace-separated word. So each
//! piece is encoded once by the Hugging Face tokenizer and memoized in a
//! bounded per-thread cache; natural text repeats its words, so most pieces
//! are cache hits. Every id still comes from the Hugging Face tokenizer, and
//! tests compare against the uncached path. Other tokenizer types always take
//! the plain path.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rayon::prelude::*;
use tokenizers::{ModelWrapper, NormalizerWrapper, PreTokenizerWrapper, Tokenizer};

use crate::error::{DataError, Result};

/// The files of a Hugging Face tokenizer directory: `tokenizer.json` and the companions that
/// `AutoTokenizer` reads beside it.
pub const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
];

/// Copies `tokenizer_json` and the companion files found beside it into `dir` (a model
/// directory, say). A file that cannot be copied is a warning: the model is usable without it.
pub fn copy_tokenizer_files(tokenizer_json: &Path, dir: &Path) {
    let Some(from_dir) = tokenizer_json.parent() else {
        return;
    };
    for name in TOKENIZER_FILES {
        let from = if name == TOKENIZER_FILES[0] {
            tokenizer_json.to_path_buf()
        } else {
            from_dir.join(name)
        };
        if from.is_file() {
            if let Err(e) = std::fs::copy(&from, dir.join(name)) {
                tracing::warn!(
                    "could not copy {} into {}: {e}",
                    from.display(),
                    dir.display()
                );
            }
        }
    }
}

/// The ids of the BERT special tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    pub cls: u32,
    pub sep: u32,
    pub pad: u32,
    pub mask: u32,
    pub unk: u32,
}

impl SpecialIds {
    /// True for the tokens that masking must never select (the Hugging Face MLM
    /// collator's `all_special_ids`, which includes `[UNK]`).
    pub fn is_special(&self, id: u32) -> bool {
        id == self.cls || id == self.sep || id == self.pad || id == self.mask || id == self.unk
    }
}

/// Characters that separate pieces; the BERT pipeline maps each to a word break.
const PIECE_BREAKS: [char; 4] = [' ', '\t', '\n', '\r'];
/// Longer pieces are encoded without caching (rare; keeps entries small).
const MAX_CACHED_PIECE: usize = 48;
/// Entries per thread before the cache is emptied (bounds memory to a few MiB).
const MAX_CACHE_ENTRIES: usize = 1 << 17;

/// Identifies a loaded tokenizer so a thread's cache is never used across tokenizers.
static NEXT_TOKENIZER_ID: AtomicU64 = AtomicU64::new(1);

/// FxHash: a fast hasher for the short string keys of the piece cache.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

struct PieceCache {
    owner: u64,
    map: HashMap<Box<str>, Box<[u32]>, BuildHasherDefault<FxHasher>>,
}

thread_local! {
    static PIECE_CACHE: RefCell<PieceCache> = RefCell::new(PieceCache {
        owner: 0,
        map: HashMap::default(),
    });
}

/// The special ids the tokenizer puts around a single sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Wrapping {
    prefix: Vec<u32>,
    suffix: Vec<u32>,
}

/// A loaded tokenizer; cheap to clone (shared).
#[derive(Clone)]
pub struct TokenizerHandle {
    inner: Arc<Tokenizer>,
    name: String,
    special: SpecialIds,
    vocab_size: usize,
    id: u64,
    /// Set when the piece cache gives the same ids as the plain path.
    pieces: Option<Arc<Wrapping>>,
}

impl std::fmt::Debug for TokenizerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenizerHandle")
            .field("name", &self.name)
            .field("special", &self.special)
            .field("vocab_size", &self.vocab_size)
            .finish()
    }
}

impl TokenizerHandle {
    /// Loads a `tokenizer.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        if !path.exists() {
            return Err(DataError::MissingFile {
                path: path.to_path_buf(),
            });
        }
        let tokenizer = Tokenizer::from_file(path).map_err(|e| DataError::Tokenizer {
            path: name.clone(),
            message: e.to_string(),
        })?;
        Self::from_tokenizer(tokenizer, name)
    }

    /// Loads a `tokenizer.json` held in memory (e.g. embedded in a binary); `name`
    /// is used in error messages.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Self> {
        let tokenizer = Tokenizer::from_bytes(bytes).map_err(|e| DataError::Tokenizer {
            path: name.to_string(),
            message: e.to_string(),
        })?;
        Self::from_tokenizer(tokenizer, name.to_string())
    }

    fn from_tokenizer(mut tokenizer: Tokenizer, name: String) -> Result<Self> {
        // Lengths are managed by packing / GLUE encoding, never by the file's settings
        // (some tokenizer.json files ship with truncation to 128 and padding on).
        tokenizer
            .with_truncation(None)
            .map_err(|e| DataError::Tokenizer {
                path: name.clone(),
                message: e.to_string(),
            })?;
        tokenizer.with_padding(None);
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| DataError::Tokenizer {
                    path: name.clone(),
                    message: format!("vocabulary has no {token} token"),
                })
        };
        let special = SpecialIds {
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            pad: id("[PAD]")?,
            mask: id("[MASK]")?,
            unk: id("[UNK]")?,
        };
        let vocab_size = tokenizer.get_vocab_size(true);
        let pieces = piece_wrapping(&tokenizer).map(Arc::new);
        Ok(TokenizerHandle {
            inner: Arc::new(tokenizer),
            name,
            special,
            vocab_size,
            id: NEXT_TOKENIZER_ID.fetch_add(1, Ordering::Relaxed),
            pieces,
        })
    }

    pub fn cls_id(&self) -> u32 {
        self.special.cls
    }
    pub fn sep_id(&self) -> u32 {
        self.special.sep
    }
    pub fn pad_id(&self) -> u32 {
        self.special.pad
    }
    pub fn mask_id(&self) -> u32 {
        self.special.mask
    }
    pub fn unk_id(&self) -> u32 {
        self.special.unk
    }
    pub fn special_ids(&self) -> SpecialIds {
        self.special
    }

    /// Vocabulary size including added tokens (the embedding table size).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Where the tokenizer was loaded from (for messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The wrapped Hugging Face tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner
    }

    /// Identifies what the tokenizer does: a hash of its serialized form (vocabulary,
    /// normalizer, pre-tokenizer, post-processor), the same for every copy of the file. Token
    /// shards record it, so they are read only with the tokenizer that made them.
    pub fn fingerprint(&self) -> Result<String> {
        let json = self
            .inner
            .to_string(false)
            .map_err(|e| DataError::Tokenizer {
                path: self.name.clone(),
                message: format!("cannot serialize: {e}"),
            })?;
        let mut h = crate::rng::StableHasher::new();
        h.write(json.as_bytes());
        Ok(format!("{:016x}", h.finish()))
    }

    /// Whether texts are encoded piece by piece through the cache (BERT-style tokenizers).
    pub fn uses_piece_cache(&self) -> bool {
        self.pieces.is_some()
    }

    /// Encodes one text; with `add_special_tokens` the result is `[CLS] … [SEP]`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        match &self.pieces {
            Some(wrapping) => self.encode_pieces(text, add_special_tokens, wrapping),
            None => encode_one(&self.inner, text, add_special_tokens),
        }
    }

    /// Encodes with the plain Hugging Face path, bypassing the piece cache.
    pub fn encode_uncached(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        encode_one(&self.inner, text, add_special_tokens)
    }

    /// Encodes texts in parallel on the current rayon pool, keeping their order.
    pub fn encode_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        add_special_tokens: bool,
    ) -> Result<Vec<Vec<u32>>> {
        texts
            .par_iter()
            .map(|t| self.encode(t.as_ref(), add_special_tokens))
            .collect()
    }

    fn encode_pieces(
        &self,
        text: &str,
        add_special_tokens: bool,
        wrapping: &Wrapping,
    ) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special_tokens {
            out.extend_from_slice(&wrapping.prefix);
        }
        PIECE_CACHE.with(|cache| -> Result<()> {
            let mut cache = cache.borrow_mut();
            if cache.owner != self.id {
                cache.map.clear();
                cache.owner = self.id;
            }
            for piece in text.split(PIECE_BREAKS).filter(|p| !p.is_empty()) {
                if let Some(ids) = cache.map.get(piece) {
                    out.extend_from_slice(ids);
                    continue;
                }
                let ids = encode_one(&self.inner, piece, false)?;
                out.extend_from_slice(&ids);
                if piece.len() <= MAX_CACHED_PIECE {
                    if cache.map.len() >= MAX_CACHE_ENTRIES {
                        cache.map.clear();
                    }
                    cache.map.insert(piece.into(), ids.into_boxed_slice());
                }
            }
            Ok(())
        })?;
        if add_special_tokens {
            out.extend_from_slice(&wrapping.suffix);
        }
        Ok(out)
    }
}

/// The special ids around a single sequence, when piece-wise encoding is exact
/// for this tokenizer: BERT normalizer (or none), BERT pre-tokenizer, WordPiece,
/// added tokens without whitespace, and a post-processor that only wraps.
fn piece_wrapping(tokenizer: &Tokenizer) -> Option<Wrapping> {
    let bert_normalizer = tokenizer
        .get_normalizer()
        .is_none_or(|n| matches!(n, NormalizerWrapper::BertNormalizer(_)));
    let bert_pre = matches!(
        tokenizer.get_pre_tokenizer(),
        Some(PreTokenizerWrapper::BertPreTokenizer(_))
    );
    let wordpiece = matches!(tokenizer.get_model(), ModelWrapper::WordPiece(_));
    let added_ok = tokenizer
        .get_added_tokens_decoder()
        .values()
        .all(|t| !t.content.contains(PIECE_BREAKS));
    if !(bert_normalizer && bert_pre && wordpiece && added_ok) {
        return None;
    }
    let mut wrapping = None;
    for probe in ["hello world", "a"] {
        let with = encode_one(tokenizer, probe, true).ok()?;
        let without = encode_one(tokenizer, probe, false).ok()?;
        let start = (0..=with.len().checked_sub(without.len())?)
            .find(|&s| with[s..s + without.len()] == without[..])?;
        let w = Wrapping {
            prefix: with[..start].to_vec(),
            suffix: with[start + without.len()..].to_vec(),
        };
        if wrapping.as_ref().is_some_and(|prev| prev != &w) {
            return None;
        }
        wrapping = Some(w);
    }
    wrapping
}

fn encode_one(tokenizer: &Tokenizer, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
    // `encode_fast` skips the char-offset conversion that ids do not need.
    tokenizer
        .encode_fast(text, add_special_tokens)
        .map(|enc| enc.get_ids().to_vec())
        .map_err(|e| DataError::Encode {
            origin: describe_text(text),
            message: e.to_string(),
        })
}

/// A short description of a text for error messages.
pub(crate) fn describe_text(text: &str) -> String {
    let head: String = text.chars().take(40).collect();
    format!("text {head:?}… ({} bytes)", text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> TokenizerHandle {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../data/tokenizer/bert-base-uncased/tokenizer.json"
        );
        TokenizerHandle::from_file(path).expect("shipped tokenizer loads")
    }

    #[test]
    fn special_ids_of_bert_base_uncased() {
        let t = shipped();
        assert_eq!(
            (t.pad_id(), t.unk_id(), t.cls_id(), t.sep_id(), t.mask_id()),
            (0, 100, 101, 102, 103)
        );
        assert_eq!(t.vocab_size(), 30522);
    }

    #[test]
    fn encode_batch_keeps_order() {
        let t = shipped();
        let texts = ["Hello, world!", "Café naïve", ""];
        let ids = t.encode_batch(&texts, true).unwrap();
        assert_eq!(ids[0], vec![101, 7592, 1010, 2088, 999, 102]);
        assert_eq!(ids[2], vec![101, 102]);
        assert_eq!(t.encode("Hello, world!", false).unwrap(), ids[0][1..5]);
    }

    #[test]
    fn piece_cache_matches_the_plain_path() {
        let t = shipped();
        assert!(t.uses_piece_cache());
        let texts = [
            "Hello, world! Hello again,\tworld.\r\nA\u{0}B",
            "  spaced   out  ",
            "don't [MASK] the cafe\u{301}\u{a0}now",
            "日本語 と English mixed",
        ];
        for text in texts {
            for special in [true, false] {
                let fast = t.encode(text, special).unwrap();
                assert_eq!(fast, t.encode_uncached(text, special).unwrap(), "{text:?}");
                // The second time comes from the cache.
                assert_eq!(fast, t.encode(text, special).unwrap());
            }
        }
    }

    #[test]
    fn missing_and_bad_files_are_errors() {
        let err = TokenizerHandle::from_file("/nonexistent/tokenizer.json").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/tokenizer.json"));
        let err = TokenizerHandle::from_bytes(b"{not json", "inline").unwrap_err();
        assert!(err.to_string().starts_with("tokenizer inline:"), "{err}");
    }
}
