//! The word embedding table: held whole (`f32` or int8), or read row by
//! row on demand from the memory-mapped weights file.

use super::int8::Int8Weights;
use super::tensors::RowSource;
use super::ForwardError;

/// The word embedding table, `vocab × hidden`.
#[derive(Debug, Clone)]
pub(super) enum WordTable {
    F32(Vec<f32>),
    Int8(Int8Weights),
    /// Read from the model file a row at a time, when a batch first uses
    /// it.
    OnDemand(std::sync::Arc<OnDemandWords>),
}

impl WordTable {
    /// Writes row `id` into `out` (`hidden` values).
    pub(super) fn row(
        &self,
        id: usize,
        hidden: usize,
        out: &mut [f32],
    ) -> Result<(), ForwardError> {
        match self {
            WordTable::F32(t) => out.copy_from_slice(&t[id * hidden..(id + 1) * hidden]),
            WordTable::Int8(t) => t.expand_rows(id..id + 1, out),
            WordTable::OnDemand(t) => t.row(id, out)?,
        }
        Ok(())
    }

    /// Bytes held; for a table read on demand, what it holds once every row
    /// has been used (its upper bound).
    pub(super) fn bytes(&self) -> usize {
        match self {
            WordTable::F32(t) => 4 * t.len(),
            WordTable::Int8(t) => t.bytes(),
            WordTable::OnDemand(t) => t.bytes(),
        }
    }
}

/// A word table whose rows are read from the model file when first used
/// and kept (in `f32`, or quantised for int8).
///
/// A batch uses a few thousand of a vocabulary's rows (all-MiniLM-L6-v2:
/// 30,522 rows, 45 MiB in `f32`), so keeping only the rows used keeps most
/// of the model's largest tensor out of memory (docs/memory.md). Written
/// by hand rather than memory-mapping the file: a mapped file that shrinks
/// under the process kills it with `SIGBUS` on the next read, where a read
/// here fails with a typed error.
#[derive(Debug)]
pub(super) struct OnDemandWords {
    source: RowSource,
    hidden: usize,
    rows: WordRows,
}

/// One cell per row, each row one allocation once read.
#[derive(Debug)]
enum WordRows {
    F32(Vec<std::sync::OnceLock<Box<[f32]>>>),
    /// Rows in [`Int8Weights::quantize_row_packed`]'s form.
    Int8(Vec<std::sync::OnceLock<Box<[u8]>>>),
}

/// The row in `cells[id]`, made by `make` when no batch has read it yet
/// (two batches may make it at once; the first one stored is kept).
fn word_row<T>(
    cells: &[std::sync::OnceLock<Box<[T]>>],
    id: usize,
    make: impl FnOnce() -> Result<Box<[T]>, ForwardError>,
) -> Result<&[T], ForwardError> {
    let cell = &cells[id];
    match cell.get() {
        Some(row) => Ok(row),
        None => {
            let row = make()?;
            Ok(cell.get_or_init(|| row))
        }
    }
}

impl OnDemandWords {
    pub(super) fn new(source: RowSource, vocab: usize, hidden: usize, int8: bool) -> Self {
        fn cells<T>(vocab: usize) -> Vec<std::sync::OnceLock<Box<[T]>>> {
            (0..vocab).map(|_| std::sync::OnceLock::new()).collect()
        }
        OnDemandWords {
            source,
            hidden,
            rows: if int8 {
                WordRows::Int8(cells(vocab))
            } else {
                WordRows::F32(cells(vocab))
            },
        }
    }

    /// Row `id` as read from the file, in `f32`.
    fn read(&self, id: usize) -> Result<Vec<f32>, ForwardError> {
        let mut values = vec![0f32; self.hidden];
        self.source
            .read(id..id + 1, &mut values)
            .map_err(|e| ForwardError::WeightsUnreadable(e.to_string()))?;
        Ok(values)
    }

    pub(super) fn row(&self, id: usize, out: &mut [f32]) -> Result<(), ForwardError> {
        match &self.rows {
            WordRows::F32(cells) => {
                out.copy_from_slice(word_row(cells, id, || Ok(self.read(id)?.into()))?)
            }
            WordRows::Int8(cells) => {
                let row = word_row(cells, id, || {
                    Ok(Int8Weights::quantize_row_packed(&self.read(id)?))
                })?;
                Int8Weights::expand_row_packed(row, out)
            }
        }
        Ok(())
    }

    /// What the table holds once every row has been read: each row's
    /// allocation (rounded up to malloc's 16 bytes, plus its header) and
    /// its cell.
    pub(super) fn bytes(&self) -> usize {
        let (rows, payload, cell) = match &self.rows {
            WordRows::F32(c) => (
                c.len(),
                4 * self.hidden,
                std::mem::size_of::<std::sync::OnceLock<Box<[f32]>>>(),
            ),
            WordRows::Int8(c) => (
                c.len(),
                Int8Weights::packed_row_bytes(self.hidden),
                std::mem::size_of::<std::sync::OnceLock<Box<[u8]>>>(),
            ),
        };
        rows * (payload.next_multiple_of(16) + 16 + cell)
    }

    /// Rows read so far.
    #[cfg(test)]
    pub(super) fn rows_read(&self) -> usize {
        match &self.rows {
            WordRows::F32(c) => c.iter().filter(|r| r.get().is_some()).count(),
            WordRows::Int8(c) => c.iter().filter(|r| r.get().is_some()).count(),
        }
    }
}
