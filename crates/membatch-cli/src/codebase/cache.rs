//! The incremental cache: blake3(model id, chunk text) → vector in a
//! `redb` database, committed window by window, and pruned to what the
//! last complete run used.

use std::path::Path;

use membatch::{BatchEmbedder, BertEmbedder, Embedder};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::index::ChunkMeta;
use super::index::IndexWriter;
use crate::support::{fail, Failure};

/// The cache: blake3 key → little-endian f32 vector.
const VECTORS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("vectors");
/// The keys this run used, so the cache can forget the others at the end
/// without holding every key in memory.
const SEEN: TableDefinition<&[u8], ()> = TableDefinition::new("seen");

/// Opens (or creates) the cache in `out` for a new run. Opening takes
/// redb's exclusive lock: a second run on the same INDEX_DIR stops here,
/// before it touches any generation.
pub(super) fn open(out: &Path) -> Result<Database, Failure> {
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
    Ok(db)
}

/// Embeds the chunks of one window that the cache does not hold, caches
/// them and marks every key of the window seen in one transaction, and
/// writes every chunk of the window (reused or new) to the index in order.
/// Returns (embedded, reused).
pub(super) fn embed_window(
    batcher: &BatchEmbedder<BertEmbedder>,
    db: &Database,
    model_id: &str,
    pending: &mut Vec<(ChunkMeta, String)>,
    writer: &mut IndexWriter,
) -> Result<(usize, usize), Failure> {
    let dimension = batcher.embedder().dimension();
    let keys: Vec<[u8; 32]> = pending
        .iter()
        .map(|(_, text)| {
            let mut h = blake3::Hasher::new();
            h.update(model_id.as_bytes());
            h.update(&[0]);
            h.update(text.as_bytes());
            *h.finalize().as_bytes()
        })
        .collect();
    let mut vectors: Vec<Option<Vec<f32>>> = {
        let txn = db.begin_read()?;
        let table = txn.open_table(VECTORS)?;
        keys.iter()
            .map(|k| {
                let v = table.get(k.as_slice())?.map(|v| from_le_bytes(v.value()));
                // A vector of the wrong length is a miss, overwritten below.
                Ok(v.filter(|v| v.len() == dimension))
            })
            .collect::<Result<_, Failure>>()?
    };
    let missing: Vec<usize> = (0..pending.len())
        .filter(|&i| vectors[i].is_none())
        .collect();
    let fresh = if missing.is_empty() {
        Vec::new()
    } else {
        let texts: Vec<&str> = missing.iter().map(|&i| pending[i].1.as_str()).collect();
        batcher.embed(&texts)?
    };
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(VECTORS)?;
        for (&i, v) in missing.iter().zip(fresh) {
            table.insert(keys[i].as_slice(), to_le_bytes(&v).as_slice())?;
            vectors[i] = Some(v);
        }
        let mut seen = txn.open_table(SEEN)?;
        for k in &keys {
            seen.insert(k.as_slice(), ())?;
        }
    }
    // Committed per window: an interrupted run keeps what it embedded.
    txn.commit()?;
    for ((meta, _), v) in pending.iter().zip(vectors) {
        let v = v.ok_or_else(|| fail("a chunk has no vector (cache and embedder disagree)"))?;
        writer.push(meta, &v)?;
    }
    let embedded = missing.len();
    let reused = pending.len() - embedded;
    pending.clear();
    Ok((embedded, reused))
}

/// Drops cached vectors no chunk of this run used (deleted or edited
/// code), so the cache does not grow without bound.
pub(super) fn forget_unused(db: &Database) -> Result<(), Failure> {
    let txn = db.begin_write()?;
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

pub(super) fn to_le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(super) fn from_le_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
