//! The incremental cache: a key → vector store in a `redb` database, keyed
//! by blake3 of the model id and the chunk text. The indexing loop looks
//! a window's keys up, embeds the misses and stores them; the cache is
//! pruned at the end to what the last complete run used.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::codec::{from_le_bytes, to_le_bytes};
use membatch_bin::{fail, Failure};

/// The cache: blake3 key → little-endian f32 vector.
const VECTORS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("vectors");
/// The keys this run used, so the cache can forget the others at the end
/// without holding every key in memory.
const SEEN: TableDefinition<&[u8], ()> = TableDefinition::new("seen");

/// A cache key: which model embedded which text.
pub(super) type Key = [u8; 32];

/// The vectors of earlier runs (and of this one, window by window).
pub(super) struct VectorCache {
    db: Database,
}

impl VectorCache {
    /// Opens (or creates) the cache in `out` for a new run. Opening takes
    /// redb's exclusive lock: a second run on the same INDEX_DIR stops
    /// here, before it touches any generation.
    pub(super) fn open(out: &Path) -> Result<Self, Failure> {
        let path = out.join("cache.redb");
        let db = Database::create(&path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        {
            // Both tables exist from here on; `SEEN` starts empty each run.
            let txn = db.begin_write()?;
            txn.open_table(VECTORS)?;
            txn.delete_table(SEEN)?;
            txn.open_table(SEEN)?;
            txn.commit()?;
        }
        Ok(VectorCache { db })
    }

    /// The key of `text` embedded by the model `model_id`.
    pub(super) fn key(model_id: &str, text: &str) -> Key {
        let mut h = blake3::Hasher::new();
        h.update(model_id.as_bytes());
        h.update(&[0]);
        h.update(text.as_bytes());
        *h.finalize().as_bytes()
    }

    /// The cached vector of each key; a miss, or a vector of another
    /// length than `dimension` (overwritten when stored again), is `None`.
    pub(super) fn lookup(
        &self,
        keys: &[Key],
        dimension: usize,
    ) -> Result<Vec<Option<Vec<f32>>>, Failure> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(VECTORS)?;
        keys.iter()
            .map(|k| {
                let v = table.get(k.as_slice())?.map(|v| from_le_bytes(v.value()));
                Ok(v.filter(|v| v.len() == dimension))
            })
            .collect()
    }

    /// Stores `new` vectors and marks every key of `used` seen by this run,
    /// in one transaction: an interrupted run keeps what it stored.
    pub(super) fn store(&self, used: &[Key], new: &[(&Key, &[f32])]) -> Result<(), Failure> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(VECTORS)?;
            for (k, v) in new {
                table.insert(k.as_slice(), to_le_bytes(v).as_slice())?;
            }
            let mut seen = txn.open_table(SEEN)?;
            for k in used {
                seen.insert(k.as_slice(), ())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Drops cached vectors no chunk of this run used (deleted or edited
    /// code), so the cache does not grow without bound.
    pub(super) fn forget_unused(&self) -> Result<(), Failure> {
        let txn = self.db.begin_write()?;
        {
            let seen = txn.open_table(SEEN)?;
            let mut table = txn.open_table(VECTORS)?;
            let mut lookup_failed = false;
            table.retain(|k, _| match seen.get(k) {
                Ok(hit) => hit.is_some(),
                Err(_) => {
                    lookup_failed = true;
                    true
                }
            })?;
            if lookup_failed {
                return Err(fail("the cache's seen-table could not be read"));
            }
        }
        txn.delete_table(SEEN)?;
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_vectors_are_found_and_unused_ones_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (VectorCache::key("m", "a"), VectorCache::key("m", "b"));
        assert_ne!(a, VectorCache::key("other model", "a"));
        {
            let cache = VectorCache::open(dir.path()).unwrap();
            assert_eq!(cache.lookup(&[a], 2).unwrap(), [None]);
            cache
                .store(&[a, b], &[(&a, &[1.0, 2.0][..]), (&b, &[3.0, 4.0][..])])
                .unwrap();
            assert_eq!(
                cache.lookup(&[a, b], 2).unwrap(),
                [Some(vec![1.0, 2.0]), Some(vec![3.0, 4.0])]
            );
            assert_eq!(cache.lookup(&[a], 3).unwrap(), [None], "wrong length");
        }
        // The next run uses only `a`: `b` is forgotten at its end.
        let cache = VectorCache::open(dir.path()).unwrap();
        cache.store(&[a], &[]).unwrap();
        cache.forget_unused().unwrap();
        assert_eq!(
            cache.lookup(&[a, b], 2).unwrap(),
            [Some(vec![1.0, 2.0]), None]
        );
    }
}
