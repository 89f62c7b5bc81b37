//! Turning tokenized documents into fixed-length rows.
//!
//! * [`PackMode::Packed`] (the reference recipe): every document is
//!   `[CLS] … [SEP]`, documents are concatenated and cut into rows of exactly
//!   `max_length` tokens; the tail that does not fill a row is dropped. No
//!   padding, no attention mask.
//! * [`PackMode::PerDocument`]: one document per row, truncated to `max_length`
//!   (keeping the final `[SEP]`), padded with `[PAD]`, with an attention mask.
//!
//! Rows are stored as `u16` when the vocabulary fits (BERT's 30,522 does), which
//! halves the memory of the shuffle buffer.

use serde::{Deserialize, Serialize};

/// How documents become rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PackMode {
    #[default]
    Packed,
    PerDocument,
}

/// Token storage, `u16` when every id fits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenStore {
    U16(Vec<u16>),
    U32(Vec<u32>),
}

impl TokenStore {
    fn new(vocab_size: usize) -> Self {
        if vocab_size <= usize::from(u16::MAX) + 1 {
            TokenStore::U16(Vec::new())
        } else {
            TokenStore::U32(Vec::new())
        }
    }

    fn len(&self) -> usize {
        match self {
            TokenStore::U16(v) => v.len(),
            TokenStore::U32(v) => v.len(),
        }
    }

    fn extend(&mut self, ids: &[u32]) {
        match self {
            // Ids are < vocab_size <= 65536 here, so the cast is exact.
            TokenStore::U16(v) => v.extend(ids.iter().map(|&id| id as u16)),
            TokenStore::U32(v) => v.extend_from_slice(ids),
        }
    }

    fn push_n(&mut self, id: u32, n: usize) {
        match self {
            TokenStore::U16(v) => v.extend(std::iter::repeat_n(id as u16, n)),
            TokenStore::U32(v) => v.extend(std::iter::repeat_n(id, n)),
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            TokenStore::U16(v) => v.truncate(len),
            TokenStore::U32(v) => v.truncate(len),
        }
    }

    fn copy_to(&self, start: usize, len: usize, out: &mut Vec<u32>) {
        match self {
            TokenStore::U16(v) => out.extend(v[start..start + len].iter().map(|&t| u32::from(t))),
            TokenStore::U32(v) => out.extend_from_slice(&v[start..start + len]),
        }
    }

    fn bytes_per_token(&self) -> usize {
        match self {
            TokenStore::U16(_) => 2,
            TokenStore::U32(_) => 4,
        }
    }
}

/// Rows of `seq_len` tokens built from documents, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedRows {
    mode: PackMode,
    seq_len: usize,
    pad_id: u32,
    sep_id: u32,
    tokens: TokenStore,
    /// Real (unpadded) length of each row; only for per-document rows.
    lengths: Vec<u32>,
}

impl PackedRows {
    /// An empty set of rows. `vocab_size` decides the storage width.
    pub fn new(
        mode: PackMode,
        seq_len: usize,
        vocab_size: usize,
        pad_id: u32,
        sep_id: u32,
    ) -> Self {
        PackedRows {
            mode,
            seq_len,
            pad_id,
            sep_id,
            tokens: TokenStore::new(vocab_size),
            lengths: Vec::new(),
        }
    }

    /// Adds one document, already encoded as `[CLS] … [SEP]`.
    pub fn push_document(&mut self, ids: &[u32]) {
        match self.mode {
            PackMode::Packed => self.tokens.extend(ids),
            PackMode::PerDocument => {
                let keep = ids.len().min(self.seq_len);
                self.tokens.extend(&ids[..keep]);
                if ids.len() > self.seq_len && keep > 0 {
                    // Truncated: end the row with [SEP] as the HF tokenizer's truncation does.
                    self.tokens.truncate(self.tokens.len() - 1);
                    self.tokens.extend(&[self.sep_id]);
                }
                self.tokens.push_n(self.pad_id, self.seq_len - keep);
                self.lengths.push(keep as u32);
            }
        }
    }

    /// Number of complete rows.
    pub fn rows(&self) -> usize {
        self.tokens.len() / self.seq_len
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    pub fn mode(&self) -> PackMode {
        self.mode
    }

    /// Drops the tail that does not fill a row (packed mode).
    pub fn drop_tail(&mut self) {
        self.tokens.truncate(self.rows() * self.seq_len);
    }

    /// Appends row `row`'s tokens to `out` and, for per-document rows, its
    /// attention mask to `mask`.
    pub fn copy_row(&self, row: usize, out: &mut Vec<u32>, mask: Option<&mut Vec<u32>>) {
        self.tokens.copy_to(row * self.seq_len, self.seq_len, out);
        if let Some(mask) = mask {
            let len = self.lengths.get(row).map_or(self.seq_len, |&l| l as usize);
            mask.extend(std::iter::repeat_n(1, len));
            mask.extend(std::iter::repeat_n(0, self.seq_len - len));
        }
    }

    /// The tokens of one row as `u32`.
    pub fn row(&self, row: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.seq_len);
        self.copy_row(row, &mut out, None);
        out
    }

    /// Bytes of token storage in use (for memory accounting).
    pub fn memory_bytes(&self) -> usize {
        self.tokens.len() * self.tokens.bytes_per_token() + self.lengths.len() * 4
    }
}

/// Packs a list of encoded documents at once (tail dropped).
pub fn pack_documents(
    docs: &[Vec<u32>],
    mode: PackMode,
    seq_len: usize,
    vocab_size: usize,
    pad_id: u32,
    sep_id: u32,
) -> PackedRows {
    let mut rows = PackedRows::new(mode, seq_len, vocab_size, pad_id, sep_id);
    for d in docs {
        rows.push_document(d);
    }
    rows.drop_tail();
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(n: u32, len: usize) -> Vec<u32> {
        let mut d = vec![101];
        d.extend((0..len as u32).map(|i| 1000 + n * 100 + i));
        d.push(102);
        d
    }

    #[test]
    fn packed_rows_are_the_concatenation_cut_exactly() {
        let docs = vec![doc(1, 5), doc(2, 9), doc(3, 2), doc(4, 11)];
        let rows = pack_documents(&docs, PackMode::Packed, 8, 30522, 0, 102);
        let all: Vec<u32> = docs.concat();
        assert_eq!(rows.rows(), all.len() / 8);
        for r in 0..rows.rows() {
            assert_eq!(rows.row(r), all[r * 8..(r + 1) * 8]);
        }
        assert_eq!(rows.memory_bytes(), rows.rows() * 8 * 2);
    }

    #[test]
    fn per_document_rows_truncate_keep_sep_and_pad() {
        let docs = vec![doc(1, 3), doc(2, 20)];
        let rows = pack_documents(&docs, PackMode::PerDocument, 8, 30522, 0, 102);
        assert_eq!(rows.rows(), 2);
        let mut ids = Vec::new();
        let mut mask = Vec::new();
        rows.copy_row(0, &mut ids, Some(&mut mask));
        assert_eq!(ids, vec![101, 1100, 1101, 1102, 102, 0, 0, 0]);
        assert_eq!(mask, vec![1, 1, 1, 1, 1, 0, 0, 0]);
        assert_eq!(
            rows.row(1),
            vec![101, 1200, 1201, 1202, 1203, 1204, 1205, 102]
        );
    }

    #[test]
    fn wide_vocabularies_use_u32() {
        let rows = pack_documents(
            &[vec![101, 70000, 102, 5]],
            PackMode::Packed,
            2,
            80000,
            0,
            102,
        );
        assert_eq!(rows.row(0), vec![101, 70000]);
        assert_eq!(rows.memory_bytes(), 16);
    }
}
