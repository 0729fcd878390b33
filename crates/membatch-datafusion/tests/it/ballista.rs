//! The same SQL on an in-process Ballista cluster (standalone) gives the
//! single-node vectors, with the real model (scripts/fetch-model.sh;
//! `#[ignore]`d in a plain `cargo test`, run by scripts/test.sh, and fails
//! without it), and the executor's tasks reserve in the pool `embed` uses.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float32Type, Int64Type};
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use membatch::memory::{MemoryConfig, MemoryLimit};
use membatch::{BatchConfig, BertEmbedder, MemoryBudget, ModelSource};
use membatch_datafusion::{ballista, session, EmbedUdf};

fn real_model_dir() -> String {
    match ModelSource::default_model() {
        ModelSource::Dir(p) => p.display().to_string(),
        other => panic!(
            "the real model weights are required (scripts/fetch-model.sh); found only {other}"
        ),
    }
}

fn embed_udf(pool: Arc<dyn MemoryPool>) -> EmbedUdf {
    EmbedUdf::builder()
        .model(
            "minilm",
            BertEmbedder::load(ModelSource::parse(&real_model_dir())).unwrap(),
        )
        .pool(pool)
        .budget(MemoryBudget::new(
            MemoryConfig::builder()
                .limit(MemoryLimit::Bytes(2 << 30))
                .build()
                .unwrap(),
        ))
        .batch(BatchConfig::default())
        .build()
        .unwrap()
}

fn by_id(batches: &[RecordBatch]) -> Vec<(i64, Vec<f32>)> {
    let mut rows: Vec<(i64, Vec<f32>)> = batches
        .iter()
        .flat_map(|b| {
            let ids = b.column(0).as_primitive::<Int64Type>().clone();
            let list = b.column(1).as_fixed_size_list().clone();
            (0..b.num_rows())
                .map(move |i| {
                    (
                        ids.value(i),
                        list.value(i)
                            .as_primitive::<Float32Type>()
                            .values()
                            .to_vec(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    rows.sort_by_key(|r| r.0);
    rows
}

async fn run(ctx: &SessionContext, csv: &str) -> Vec<(i64, Vec<f32>)> {
    ctx.register_csv("docs", csv, CsvReadOptions::new())
        .await
        .unwrap();
    let batches = ctx
        .sql("SELECT id, embed(text) AS v FROM docs ORDER BY text")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    by_id(&batches)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
async fn standalone_ballista_gives_the_single_node_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("docs.csv");
    let mut body = String::from("id,text\n");
    for (i, t) in membatch_testkit::corpus::mixed_corpus(120, 4)
        .iter()
        .enumerate()
    {
        body.push_str(&format!("{i},\"{}\"\n", t.replace('"', "\"\"")));
    }
    std::fs::write(&csv, body).unwrap();
    let csv = csv.to_str().unwrap();

    let pool = session::shared_pool(1 << 30);
    let single = session::single_node(&embed_udf(pool.clone()), None, pool, 2).unwrap();
    let expected = run(&single, csv).await;
    assert_eq!(expected.len(), 120);

    let pool = session::shared_pool(1 << 30);
    let shared: Arc<dyn MemoryPool> = pool.clone();
    let embed = embed_udf(shared.clone());
    let standalone = ballista::standalone(&embed, shared, 2).await.unwrap();
    let got = run(&standalone, csv).await;
    assert_eq!(got.len(), expected.len());
    for ((gi, g), (ei, e)) in got.iter().zip(&expected) {
        assert_eq!(gi, ei);
        let diff = g
            .iter()
            .zip(e)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-6, "row {gi} differs by {diff}");
    }
    // The in-process executor ran embed with the model, reserving in the
    // session's pool next to the query's sort.
    assert_eq!(embed.metrics().texts, 120);
    let peaks = pool.peaks();
    assert!(
        peaks.iter().any(|(n, b)| n == "membatch::embed" && *b > 0),
        "{peaks:?}"
    );
    assert!(
        peaks
            .iter()
            .any(|(n, b)| n.starts_with("ExternalSorter") && *b > 0),
        "{peaks:?}"
    );
}
