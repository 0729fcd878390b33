//! `read_text_files` and `read_chunks` over a directory, with a tiny
//! random model (no weights needed): the indexer's walk rules, chunks that
//! fit the model, and `SELECT path, chunk, embed(chunk)` end to end.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::prelude::SessionContext;
use membatch::memory::{MemoryConfig, MemoryLimit};
use membatch::{BatchConfig, BertEmbedder, Embedder, MemoryBudget};
use membatch_datafusion::{session, EmbedUdf, ReadChunks};
use membatch_testkit::tiny::{tiny_model_dir, Tiny, TINY_HIDDEN};

fn tree(root: &Path) {
    let write = |rel: &str, body: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    };
    write("a.md", b"hello world");
    write("src/b.rs", b"the quick brown fox\njump lazy dog\n");
    write("src/c.rs", "the quick brown fox . ".repeat(40).as_bytes());
    write("src/ignored.rs", b"hello");
    write(".gitignore", b"ignored.rs\n");
    write(".hidden/d.md", b"hidden");
    write("bin.dat", b"ab\0cd");
    write("latin.txt", b"caf\xe9");
}

async fn collect(ctx: &SessionContext, sql: &str) -> Vec<RecordBatch> {
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

fn strings(batches: &[RecordBatch], col: usize) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column(col);
            let c =
                datafusion::arrow::compute::cast(c, &datafusion::arrow::datatypes::DataType::Utf8)
                    .unwrap();
            c.as_string::<i32>()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn session(model: &Path) -> (SessionContext, BertEmbedder) {
    let embedder = BertEmbedder::load(model).unwrap();
    let chunks = ReadChunks::new(
        embedder.token_counter().unwrap(),
        embedder.info().max_seq_length,
    );
    let pool: Arc<dyn MemoryPool> = session::shared_pool(1 << 30);
    let embed = EmbedUdf::builder()
        .model("tiny", BertEmbedder::load(model).unwrap())
        .pool(pool.clone())
        .budget(MemoryBudget::new(
            MemoryConfig::builder()
                .limit(MemoryLimit::Bytes(1 << 30))
                .build()
                .unwrap(),
        ))
        .batch(BatchConfig::default())
        .build()
        .unwrap();
    (
        session::single_node(&embed, Some(chunks), pool, 2).unwrap(),
        embedder,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_files_follow_the_indexers_rules_and_a_glob() {
    let model = tiny_model_dir(&Tiny::default());
    let corpus = tempfile::tempdir().unwrap();
    tree(corpus.path());
    let (ctx, _) = session(model.path());
    let dir = corpus.path().display();

    let all = collect(
        &ctx,
        &format!("SELECT path, content FROM read_text_files('{dir}') ORDER BY path"),
    )
    .await;
    assert_eq!(strings(&all, 0), ["a.md", "src/b.rs", "src/c.rs"]);
    assert_eq!(strings(&all, 1)[0], "hello world");

    let rust = collect(
        &ctx,
        &format!("SELECT path FROM read_text_files('{dir}', '*.rs') ORDER BY path"),
    )
    .await;
    assert_eq!(strings(&rust, 0), ["src/b.rs", "src/c.rs"]);

    // A size limit leaves the long file out.
    let small = collect(
        &ctx,
        &format!("SELECT path FROM read_text_files('{dir}', '*.rs', 100) ORDER BY path"),
    )
    .await;
    assert_eq!(strings(&small, 0), ["src/b.rs"]);

    for (sql, needle) in [
        (
            "SELECT * FROM read_text_files('/no/such/dir')".to_string(),
            "no such directory",
        ),
        (
            format!("SELECT * FROM read_text_files('{dir}', '[')"),
            "invalid glob",
        ),
        (
            format!("SELECT * FROM read_text_files('{dir}', '*', 0)"),
            "at least 1",
        ),
        (
            "SELECT * FROM read_text_files()".to_string(),
            "takes a directory",
        ),
    ] {
        let err = match ctx.sql(&sql).await {
            Ok(df) => df.collect().await.unwrap_err(),
            Err(e) => e,
        };
        assert!(err.to_string().contains(needle), "{sql}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_fit_the_model_and_embed_end_to_end() {
    let model = tiny_model_dir(&Tiny::default());
    let corpus = tempfile::tempdir().unwrap();
    tree(corpus.path());
    let (ctx, embedder) = session(model.path());
    let dir = corpus.path().display();

    let batches = collect(
        &ctx,
        &format!(
            "SELECT path, chunk_index, start_line, end_line, chunk, embed(chunk) AS v \
             FROM read_chunks('{dir}') ORDER BY path, chunk_index"
        ),
    )
    .await;
    let paths = strings(&batches, 0);
    let chunks = strings(&batches, 4);
    // The long file is cut (the tiny model reads 24 tokens), the others not.
    let c_chunks = paths.iter().filter(|p| *p == "src/c.rs").count();
    assert!(c_chunks > 3, "{paths:?}");
    assert_eq!(paths.iter().filter(|p| *p == "a.md").count(), 1);
    let counter = embedder.token_counter().unwrap();
    for chunk in &chunks {
        // Content tokens plus [CLS] and [SEP] fit the model.
        assert!(
            counter.count(chunk).unwrap() + 2 <= embedder.info().max_seq_length,
            "{chunk:?}"
        );
    }
    let index: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    let first_of_c = paths.iter().position(|p| p == "src/c.rs").unwrap();
    assert_eq!(
        &index[first_of_c..first_of_c + c_chunks],
        &(0..c_chunks as i64).collect::<Vec<_>>()[..]
    );
    let b_row = paths.iter().position(|p| p == "src/b.rs").unwrap();
    let line = |col: usize| {
        batches
            .iter()
            .flat_map(|b| b.column(col).as_primitive::<Int64Type>().values().to_vec())
            .collect::<Vec<_>>()[b_row]
    };
    assert_eq!((line(2), line(3)), (1, 2));

    // Every chunk embedded with the model's dimension, and equal to
    // embedding the chunk directly.
    let vectors: Vec<Vec<f32>> = batches
        .iter()
        .flat_map(|b| {
            let list = b.column(5).as_fixed_size_list().clone();
            (0..list.len())
                .map(move |i| {
                    list.value(i)
                        .as_primitive::<datafusion::arrow::datatypes::Float32Type>()
                        .values()
                        .to_vec()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(vectors.len(), chunks.len());
    let direct = embedder.embed(&[chunks[0].as_str()]).unwrap();
    assert_eq!(vectors[0].len(), TINY_HIDDEN);
    let diff = vectors[0]
        .iter()
        .zip(&direct[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff <= 1e-6, "{diff}");

    // Chunk settings that cannot work are planning errors.
    let err = ctx
        .sql(&format!("SELECT * FROM read_chunks('{dir}', '*', 2)"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("above 2"), "{err}");
    let err = ctx
        .sql(&format!("SELECT * FROM read_chunks('{dir}', '*', 10, 9)"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("overlap"), "{err}");
}
