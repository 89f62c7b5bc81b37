//! Token shards (`.bhtok`): a corpus file tokenized once, read back by memory mapping.
//!
//! Tokenizing is the loader's costliest stage; a pre-training run that reads its corpus many
//! times, or a GPU that consumes tokens faster than the cores tokenize them, reads these
//! instead. One shard holds the token ids of every row of one parquet file, in row order, with
//! `[CLS]`/`[SEP]` added exactly as the loader adds them; a row without text is an empty
//! document. So the loader's documents, cursors, held-out rows and batches are the same whether
//! it reads the parquet file or its shard.
//!
//! Layout, little-endian, every section at a multiple of 8 bytes:
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `BHTOKENS` |
//! | 4 | format version (1) |
//! | 4 | bytes per id: 2 (vocabularies up to 65,536) or 4 |
//! | 8 | documents `D` |
//! | 8 | tokens `T` |
//! | 8 | length `M` of the metadata |
//! | `M`, padded to 8 | [`ShardMeta`] as JSON |
//! | `8 (D + 1)` | document offsets in tokens: 0, …, `T` |
//! | `T` x bytes per id | the ids |

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// The extension that marks a token shard.
pub const EXTENSION: &str = "bhtok";
const MAGIC: &[u8; 8] = b"BHTOKENS";
const VERSION: u32 = 1;
const HEADER: usize = 40;

/// Whether `path` names a token shard (by its extension).
pub fn is_token_shard(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == EXTENSION)
}

/// What a shard was made from and with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardMeta {
    /// [`crate::TokenizerHandle::fingerprint`] of the tokenizer that made the ids.
    pub tokenizer: String,
    pub vocab_size: usize,
    /// The source file's name, size in bytes and modification time (nanoseconds since the
    /// epoch): an unchanged source is not tokenized again.
    pub source_file: String,
    pub source_bytes: u64,
    pub source_modified_ns: u128,
    pub text_column: String,
    /// Rows without text (stored as empty documents).
    pub empty_rows: u64,
}

fn format_error(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        message: format!("token shard: {}", message.into()),
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn padded(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// The fixed header and the metadata, read without mapping the rest.
struct Header {
    id_bytes: usize,
    docs: usize,
    tokens: usize,
    meta: ShardMeta,
    /// Where the offsets start.
    body: usize,
}

impl Header {
    fn parse(path: &Path, bytes: &[u8]) -> Result<Header> {
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(format_error(path, "not a token shard (no BHTOKENS header)"));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != VERSION {
            return Err(format_error(
                path,
                format!("format version {version}, this build reads {VERSION}"),
            ));
        }
        let id_bytes = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
        if id_bytes != 2 && id_bytes != 4 {
            return Err(format_error(path, format!("{id_bytes} bytes per id")));
        }
        let as_usize = |v: u64, what: &str| {
            usize::try_from(v).map_err(|_| format_error(path, format!("{what} {v} is too large")))
        };
        let docs = as_usize(u64_at(bytes, 16), "documents")?;
        let tokens = as_usize(u64_at(bytes, 24), "tokens")?;
        let meta_len = as_usize(u64_at(bytes, 32), "metadata length")?;
        let meta_end = HEADER
            .checked_add(meta_len)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| format_error(path, "truncated inside its metadata"))?;
        let meta: ShardMeta = serde_json::from_slice(&bytes[HEADER..meta_end])
            .map_err(|e| format_error(path, format!("metadata: {e}")))?;
        Ok(Header {
            id_bytes,
            docs,
            tokens,
            meta,
            body: padded(meta_end),
        })
    }

    fn file_len(&self) -> Option<usize> {
        let offsets = self.docs.checked_add(1)?.checked_mul(8)?;
        let ids = self.tokens.checked_mul(self.id_bytes)?;
        self.body.checked_add(offsets)?.checked_add(ids)
    }

    /// Refuses a file whose length is not the one its header describes.
    fn check_len(&self, path: &Path, len: u64) -> Result<()> {
        if self.file_len().map(|n| n as u64) == Some(len) {
            return Ok(());
        }
        Err(format_error(
            path,
            format!(
                "{len} bytes, its header describes {} documents and {} tokens in {} bytes \
                 (truncated or damaged)",
                self.docs,
                self.tokens,
                self.file_len()
                    .map_or("more".to_string(), |n| n.to_string())
            ),
        ))
    }
}

/// A shard's counts and metadata, from its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub docs: usize,
    pub tokens: usize,
    pub meta: ShardMeta,
}

/// Reads a shard's header and metadata (its first bytes) and checks the file's length against
/// them; [`TokenShard::open`] checks the rest.
pub fn read_info(path: &Path) -> Result<ShardInfo> {
    let mut file = File::open(path).map_err(|e| DataError::reading(path, e))?;
    let mut head = [0u8; HEADER];
    std::io::Read::read_exact(&mut file, &mut head)
        .map_err(|_| format_error(path, "shorter than its header"))?;
    let meta_len = usize::try_from(u64_at(&head, 32))
        .ok()
        .filter(|&n| n < 1 << 20)
        .ok_or_else(|| format_error(path, "implausible metadata length"))?;
    let mut bytes = head.to_vec();
    bytes.resize(HEADER + meta_len, 0);
    std::io::Read::read_exact(&mut file, &mut bytes[HEADER..])
        .map_err(|_| format_error(path, "truncated inside its metadata"))?;
    let header = Header::parse(path, &bytes)?;
    let len = file.metadata().map_err(|e| DataError::io(path, e))?.len();
    header.check_len(path, len)?;
    Ok(ShardInfo {
        docs: header.docs,
        tokens: header.tokens,
        meta: header.meta,
    })
}

/// An open, checked shard: the file mapped into memory.
pub struct TokenShard {
    map: memmap2::Mmap,
    header: Header,
}

impl TokenShard {
    /// Maps `path` and checks it whole: header, length, offsets in order, every id below the
    /// vocabulary size it records. A shard that passes cannot make a reader fail later.
    pub fn open(path: &Path) -> Result<TokenShard> {
        let file = File::open(path).map_err(|e| DataError::reading(path, e))?;
        // SAFETY: the map is read-only and private to this reader; shards are written once
        // (to a temporary name, then renamed) and never modified in place.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
        let header = Header::parse(path, &map)?;
        header.check_len(path, map.len() as u64)?;
        let shard = TokenShard { map, header };
        let mut prev = 0;
        for d in 0..=shard.header.docs {
            let o = shard.offset(d);
            let bad_end = d == shard.header.docs && o != shard.header.tokens as u64;
            if o < prev || o > shard.header.tokens as u64 || (d == 0 && o != 0) || bad_end {
                return Err(format_error(
                    path,
                    format!("document {d}: offset {o} out of order (damaged)"),
                ));
            }
            prev = o;
        }
        let vocab_size = shard.header.meta.vocab_size;
        let max = shard.ids(0, shard.header.tokens).max();
        if let Some(id) = max.filter(|&id| id as usize >= vocab_size) {
            return Err(format_error(
                path,
                format!("token id {id} is outside the vocabulary of {vocab_size}"),
            ));
        }
        Ok(shard)
    }

    /// Documents (rows of the source file).
    pub fn docs(&self) -> usize {
        self.header.docs
    }

    pub fn meta(&self) -> &ShardMeta {
        &self.header.meta
    }

    fn offset(&self, d: usize) -> u64 {
        u64_at(&self.map, self.header.body + 8 * d)
    }

    fn ids(&self, start: usize, end: usize) -> impl Iterator<Item = u32> + '_ {
        let base = self.header.body + 8 * (self.header.docs + 1);
        let w = self.header.id_bytes;
        self.map[base + start * w..base + end * w]
            .chunks_exact(w)
            .map(move |c| match c {
                [a, b] => u32::from(u16::from_le_bytes([*a, *b])),
                _ => u32::from_le_bytes(c.try_into().expect("4 bytes")),
            })
    }

    /// The ids of document `d` (empty for a row without text).
    pub fn doc(&self, d: usize) -> Vec<u32> {
        // `open` checked the offsets: in order, within the ids.
        let (start, end) = (self.offset(d) as usize, self.offset(d + 1) as usize);
        self.ids(start, end).collect()
    }
}

/// Writes one shard: documents are added in row order, then [`ShardWriter::finish`] writes the
/// file under a temporary name, syncs it and renames it, so a shard on disk is always whole.
pub struct ShardWriter {
    path: PathBuf,
    id_bytes: usize,
    offsets: Vec<u64>,
    ids: Vec<u8>,
}

impl ShardWriter {
    pub fn new(path: &Path, vocab_size: usize) -> ShardWriter {
        ShardWriter {
            path: path.to_path_buf(),
            id_bytes: if vocab_size <= 1 << 16 { 2 } else { 4 },
            offsets: vec![0],
            ids: Vec::new(),
        }
    }

    /// Appends one document (empty for a row without text).
    pub fn push(&mut self, ids: &[u32]) {
        for &id in ids {
            match self.id_bytes {
                // `new` chose 2 bytes for vocabularies of at most 65,536 ids.
                2 => self.ids.extend_from_slice(&(id as u16).to_le_bytes()),
                _ => self.ids.extend_from_slice(&id.to_le_bytes()),
            }
        }
        let last = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(last + ids.len() as u64);
    }

    /// Documents added so far.
    pub fn docs(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Tokens added so far.
    pub fn tokens(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// Writes the shard; returns its size in bytes.
    pub fn finish(self, meta: &ShardMeta) -> Result<u64> {
        let path = &self.path;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let meta_json = serde_json::to_vec(meta).expect("metadata serializes");
        // The header, metadata and offsets are small; the ids go to the file as they are.
        let mut head =
            Vec::with_capacity(HEADER + padded(meta_json.len()) + 8 * self.offsets.len());
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&VERSION.to_le_bytes());
        head.extend_from_slice(&(self.id_bytes as u32).to_le_bytes());
        head.extend_from_slice(&(self.docs() as u64).to_le_bytes());
        head.extend_from_slice(&self.tokens().to_le_bytes());
        head.extend_from_slice(&(meta_json.len() as u64).to_le_bytes());
        head.extend_from_slice(&meta_json);
        head.resize(padded(head.len()), 0);
        for o in &self.offsets {
            head.extend_from_slice(&o.to_le_bytes());
        }
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| DataError::io(dir, e))?;
        tmp.write_all(&head)
            .and_then(|()| tmp.write_all(&self.ids))
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| DataError::io(path, e))?;
        tmp.persist(path)
            .map_err(|e| DataError::io(path, e.error))?;
        Ok((head.len() + self.ids.len()) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ShardMeta {
        ShardMeta {
            tokenizer: "0123456789abcdef".into(),
            vocab_size: 30522,
            source_file: "x.parquet".into(),
            source_bytes: 10,
            source_modified_ns: 1,
            text_column: "text".into(),
            empty_rows: 1,
        }
    }

    #[test]
    fn documents_come_back_as_written_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        for vocab in [30522, 70000] {
            let path = dir.path().join(format!("a{vocab}.bhtok"));
            let docs: Vec<Vec<u32>> = vec![vec![101, 7, 102], vec![], vec![101, 30521, 9, 102]];
            let mut w = ShardWriter::new(&path, vocab);
            docs.iter().for_each(|d| w.push(d));
            let mut m = meta();
            m.vocab_size = vocab;
            w.finish(&m).unwrap();
            let shard = TokenShard::open(&path).unwrap();
            assert_eq!(shard.docs(), 3);
            assert_eq!((0..3).map(|d| shard.doc(d)).collect::<Vec<_>>(), docs);
            assert_eq!(shard.meta(), &m);
            let info = read_info(&path).unwrap();
            assert_eq!((info.docs, info.tokens, info.meta), (3, 7, m.clone()));

            // An id past the recorded vocabulary, a cut file, a wrong offset, another file.
            let mut small = ShardWriter::new(&path, 100);
            small.push(&[101]);
            small
                .finish(&ShardMeta {
                    vocab_size: 100,
                    ..meta()
                })
                .unwrap();
            let err = TokenShard::open(&path).err().unwrap().to_string();
            assert!(err.contains("token id 101 is outside"), "{err}");
            w = ShardWriter::new(&path, vocab);
            docs.iter().for_each(|d| w.push(d));
            w.finish(&m).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let cut = dir.path().join("cut.bhtok");
            std::fs::write(&cut, &bytes[..bytes.len() - 2]).unwrap();
            for err in [
                TokenShard::open(&cut).err().unwrap().to_string(),
                read_info(&cut).unwrap_err().to_string(),
            ] {
                assert!(
                    err.contains("cut.bhtok") && err.contains("truncated"),
                    "{err}"
                );
            }
            let mut swapped = bytes.clone();
            let body = padded(HEADER + u64_at(&bytes, 32) as usize);
            swapped[body + 8..body + 16].copy_from_slice(&9u64.to_le_bytes());
            std::fs::write(&cut, &swapped).unwrap();
            let err = TokenShard::open(&cut).err().unwrap().to_string();
            assert!(err.contains("document 1: offset 9 out of order"), "{err}");
            std::fs::write(&cut, b"PAR1 not a shard at all, but long enough").unwrap();
            let err = TokenShard::open(&cut).err().unwrap().to_string();
            assert!(err.contains("not a token shard"), "{err}");
        }
    }
}
