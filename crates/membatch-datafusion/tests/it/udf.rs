//! `embed` in DataFusion with the real model (scripts/fetch-model.sh; these
//! tests are `#[ignore]`d in a plain `cargo test`, run by scripts/test.sh,
//! and fail without it): the same vectors as membatch's `BatchEmbedder`
//! for every string type, nulls kept null, and memory shared with the
//! query's own operators in one pool. Prompts and dimensions per call run a
//! tiny random model.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, FixedSizeListArray, Int32Array, LargeStringArray,
    RecordBatch, StringArray, StringViewArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Int32Type, Schema};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::prelude::SessionContext;
use membatch::memory::{MemoryConfig, MemoryLimit};
use membatch::{BatchConfig, BatchEmbedder, BertEmbedder, Embedder, MemoryBudget, ModelSource};
use membatch_datafusion::{session, EmbedUdf};

fn real_model_dir() -> String {
    match ModelSource::default_model() {
        ModelSource::Dir(p) => p.display().to_string(),
        other => panic!(
            "the real model weights are required (scripts/fetch-model.sh); found only {other}"
        ),
    }
}

fn model() -> BertEmbedder {
    BertEmbedder::load(ModelSource::parse(&real_model_dir())).expect("the real model loads")
}

fn budget() -> MemoryBudget {
    MemoryBudget::new(
        MemoryConfig::builder()
            .limit(MemoryLimit::Bytes(2 << 30))
            .build()
            .unwrap(),
    )
}

/// Texts with a null, an empty string, a long one and repeats.
fn rows() -> Vec<Option<String>> {
    let mut rows: Vec<Option<String>> = membatch_testkit::corpus::mixed_corpus(40, 3)
        .into_iter()
        .map(Some)
        .collect();
    rows[3] = None;
    rows[7] = Some(String::new());
    rows[11] = None;
    rows[20] = Some("word ".repeat(2_000));
    rows
}

fn table(texts: ArrayRef) -> Arc<MemTable> {
    let n = texts.len() as i32;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("text", texts.data_type().clone(), true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(Int32Array::from_iter_values(0..n)), texts],
    )
    .unwrap();
    Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())
}

fn vectors(list: &FixedSizeListArray) -> Vec<Option<Vec<f32>>> {
    (0..list.len())
        .map(|i| {
            list.is_valid(i).then(|| {
                list.value(i)
                    .as_primitive::<Float32Type>()
                    .values()
                    .to_vec()
            })
        })
        .collect()
}

async fn embed_column(ctx: &SessionContext, sql: &str) -> Vec<Option<Vec<f32>>> {
    let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let mut out = Vec::new();
    for b in &batches {
        let col = b.column(b.num_columns() - 1);
        out.extend(vectors(col.as_fixed_size_list()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
async fn every_string_type_gives_the_batch_embedders_vectors_and_nulls_stay_null() {
    let rows = rows();
    let reference = BatchEmbedder::new(model(), budget(), BatchConfig::default()).unwrap();
    let present: Vec<&str> = rows.iter().flatten().map(String::as_str).collect();
    let mut expected = reference.embed(&present).unwrap().into_iter();

    let embed = EmbedUdf::builder()
        .model("minilm", model())
        .budget(budget())
        .batch(BatchConfig::default())
        .build()
        .unwrap();
    assert!(embed.runs());
    let ctx = SessionContext::new();
    ctx.register_udf(embed.to_udf());

    let utf8: ArrayRef = Arc::new(StringArray::from(rows.clone()));
    let large: ArrayRef = Arc::new(LargeStringArray::from(rows.clone()));
    let view: ArrayRef = Arc::new(StringViewArray::from(rows.clone()));
    let dict: ArrayRef = Arc::new(
        rows.iter()
            .map(|r| r.as_deref())
            .collect::<DictionaryArray<Int32Type>>(),
    );
    let expected: Vec<Option<Vec<f32>>> = rows
        .iter()
        .map(|r| r.as_ref().map(|_| expected.next().unwrap()))
        .collect();
    for (kind, texts) in [
        ("Utf8", utf8),
        ("LargeUtf8", large),
        ("Utf8View", view),
        ("Dictionary", dict),
    ] {
        ctx.deregister_table("docs").unwrap();
        ctx.register_table("docs", table(texts)).unwrap();
        let got = embed_column(&ctx, "SELECT id, embed(text) FROM docs ORDER BY id").await;
        assert_eq!(got.len(), rows.len(), "{kind}");
        for (row, (g, e)) in got.iter().zip(&expected).enumerate() {
            match (g, e) {
                (None, None) => {}
                (Some(g), Some(e)) => {
                    assert_eq!(g.len(), 384, "{kind} row {row}");
                    let diff = g
                        .iter()
                        .zip(e)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(diff <= 1e-6, "{kind} row {row}: differs by {diff}");
                }
                _ => panic!("{kind} row {row}: null-ness differs ({g:?} vs {e:?})"),
            }
        }
    }
    // A literal, and the model named explicitly: the same vector.
    let lit = embed_column(&ctx, "SELECT embed('a literal sentence', 'minilm')").await;
    let direct = reference.embed(&["a literal sentence"]).unwrap();
    assert_eq!(lit[0].as_ref().unwrap(), &direct[0]);
    // An unknown model is a planning error that names the loaded ones.
    let err = ctx
        .sql("SELECT embed(text, 'nope') FROM docs")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no model named \"nope\"") && err.contains("\"minilm\""),
        "{err}"
    );
}

fn docs(n: usize) -> Arc<MemTable> {
    let texts: ArrayRef = Arc::new(StringArray::from(membatch_testkit::corpus::mixed_corpus(
        n, 9,
    )));
    table(texts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
async fn embed_and_a_sort_reserve_in_one_pool() {
    let pool = session::shared_pool(512 << 20);
    let shared: Arc<dyn MemoryPool> = pool.clone();
    let embed = EmbedUdf::builder()
        .model("minilm", model())
        .pool(shared.clone())
        .budget(budget())
        .batch(BatchConfig::default())
        .build()
        .unwrap();
    let ctx = session::single_node(&embed, None, shared, 2).unwrap();
    ctx.register_table("docs", docs(300)).unwrap();
    let got = embed_column(
        &ctx,
        "SELECT id, text, embed(text) AS v FROM docs ORDER BY text DESC",
    )
    .await;
    assert_eq!(got.len(), 300);
    assert!(got.iter().all(Option::is_some));
    let peaks = pool.peaks();
    let peak = |prefix: &str| {
        peaks
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, b)| *b)
            .max()
            .unwrap_or(0)
    };
    assert!(peak("membatch::embed") > 0, "{peaks:?}");
    assert!(peak("ExternalSorter") > 0, "{peaks:?}");
    // The weights are reserved for as long as the function lives.
    assert!(peak("membatch::weights") > 80 << 20, "{peaks:?}");
    assert!(pool.reserved() >= 80 << 20);
    assert_eq!(embed.metrics().texts, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
async fn a_pool_that_refuses_big_batches_makes_them_smaller() {
    // Room for the weights, the sort's 10 MiB and about one text at a time.
    let weights = model().info().weight_bytes.unwrap() as usize;
    let pool = session::shared_pool(weights + (10 << 20) + (3 << 20));
    let shared: Arc<dyn MemoryPool> = pool.clone();
    let embed = EmbedUdf::builder()
        .model("minilm", model())
        .pool(shared.clone())
        .budget(budget())
        .batch(BatchConfig::default())
        .build()
        .unwrap();
    let ctx = session::single_node(&embed, None, shared, 1).unwrap();
    ctx.register_table("docs", docs(64)).unwrap();
    let result = ctx
        .sql("SELECT id, embed(text) FROM docs ORDER BY id")
        .await
        .unwrap()
        .collect()
        .await;
    let m = embed.metrics();
    match result {
        Ok(batches) => {
            assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 64);
            assert!(
                m.retries > 0,
                "the pool should have refused full batches: {m:?}"
            );
        }
        Err(e) => {
            let root = e.find_root();
            assert!(
                matches!(root, DataFusionError::ResourcesExhausted(_)),
                "not ResourcesExhausted: {e}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
async fn a_pool_too_small_for_one_text_is_resources_exhausted_not_a_crash() {
    // The weights and 1 MiB: one text of 256 tokens needs a few MiB.
    let weights = model().info().weight_bytes.unwrap() as usize;
    let pool = session::shared_pool(weights + (1 << 20));
    let shared: Arc<dyn MemoryPool> = pool.clone();
    let embed = EmbedUdf::builder()
        .model("minilm", model())
        .pool(shared.clone())
        .budget(budget())
        .batch(BatchConfig::default())
        .build()
        .unwrap();
    let ctx = session::single_node(&embed, None, shared, 1).unwrap();
    ctx.register_table("docs", docs(64)).unwrap();
    let err = ctx
        .sql("SELECT id, embed(repeat(text, 40)) FROM docs ORDER BY text")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert!(
        matches!(err.find_root(), DataFusionError::ResourcesExhausted(_)),
        "{err}"
    );
    assert!(err.to_string().contains("membatch"), "{err}");

    // And a pool that cannot even hold the weights says so when the
    // function is built.
    let tiny: Arc<dyn MemoryPool> = session::shared_pool(10 << 20);
    let err = EmbedUdf::builder()
        .model("minilm", model())
        .pool(tiny)
        .budget(budget())
        .build()
        .unwrap_err();
    assert!(
        matches!(err, DataFusionError::ResourcesExhausted(ref m) if m.contains("weights")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planning_function_plans_but_does_not_run() {
    let embed = EmbedUdf::builder()
        .planning_model("minilm", 384)
        .build()
        .unwrap();
    assert!(!embed.runs());
    let ctx = SessionContext::new();
    ctx.register_udf(embed.to_udf());
    ctx.register_table("docs", docs(4)).unwrap();
    let df = ctx.sql("SELECT embed(text) AS v FROM docs").await.unwrap();
    let field = df.schema().field(0).clone();
    assert_eq!(
        field.data_type(),
        &DataType::FixedSizeList(
            Arc::new(Field::new_list_field(DataType::Float32, false)),
            384
        )
    );
    let err = df.collect().await.unwrap_err().to_string();
    assert!(err.contains("only plans"), "{err}");
}

/// A tiny random model with a `query` and a `document` prompt.
fn prompted_tiny() -> (tempfile::TempDir, BertEmbedder) {
    use membatch_testkit::tiny::{tiny_model_dir, write, Tiny};
    let dir = tiny_model_dir(&Tiny::default());
    write(
        dir.path(),
        "config_sentence_transformers.json",
        r#"{"prompts": {"query": "the quick ", "document": "a man "}, "default_prompt_name": null}"#,
    );
    let model = BertEmbedder::load(ModelSource::dir(dir.path())).unwrap();
    (dir, model)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_and_dimensions_per_call_as_literals() {
    let (dir, model) = prompted_tiny();
    let texts = ["hello world", "the quick brown fox", "東京"];
    let query = model.embed_with_prompt("query", &texts).unwrap();
    let plain = model.embed(&texts).unwrap();
    let cut = model
        .embed_with(&texts, &membatch::EmbedOptions::new().with_dimensions(8))
        .unwrap();
    let embed = EmbedUdf::builder()
        .model(
            "tiny",
            BertEmbedder::load(ModelSource::dir(dir.path())).unwrap(),
        )
        .budget(budget())
        .build()
        .unwrap();
    let ctx = SessionContext::new();
    ctx.register_udf(embed.to_udf());
    let column: ArrayRef = Arc::new(StringArray::from(
        texts
            .iter()
            .map(|t| Some(t.to_string()))
            .collect::<Vec<_>>(),
    ));
    ctx.register_table("docs", table(column)).unwrap();
    let close = |got: &[Option<Vec<f32>>], want: &[Vec<f32>], what: &str| {
        assert_eq!(got.len(), want.len(), "{what}");
        for (g, w) in got.iter().zip(want) {
            let g = g.as_ref().unwrap();
            assert_eq!(g.len(), w.len(), "{what}");
            let diff = g
                .iter()
                .zip(w)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff <= 1e-6, "{what}: differs by {diff}");
        }
    };
    let got = embed_column(
        &ctx,
        "SELECT id, embed(text, 'tiny', 'query') FROM docs ORDER BY id",
    )
    .await;
    close(&got, &query, "the query prompt");
    let got = embed_column(
        &ctx,
        "SELECT id, embed(text, 'tiny', NULL) FROM docs ORDER BY id",
    )
    .await;
    close(&got, &plain, "NULL: the model's default");
    let got = embed_column(
        &ctx,
        "SELECT id, embed(text, 'tiny', NULL, 8) FROM docs ORDER BY id",
    )
    .await;
    close(&got, &cut, "8 dimensions");
    // The result type is the call's: 8 values per row.
    let df = ctx
        .sql("SELECT embed(text, 'tiny', 'document', 8) AS v FROM docs")
        .await
        .unwrap();
    let field = df.schema().field(0).clone();
    assert_eq!(
        field.data_type(),
        &DataType::FixedSizeList(Arc::new(Field::new_list_field(DataType::Float32, false)), 8)
    );

    // Planning errors, each naming what is wrong.
    for (sql, wanted) in [
        (
            "SELECT embed(text, 'tiny', 'passage') FROM docs",
            "the model's prompts are: document, query",
        ),
        (
            "SELECT embed(text, 'tiny', NULL, 0) FROM docs",
            "dimensions 0 is not between 1",
        ),
        (
            "SELECT embed(text, 'tiny', NULL, 33) FROM docs",
            "dimensions 33 is not between 1",
        ),
        (
            "SELECT embed(text, 'tiny', text) FROM docs",
            "third argument must be a prompt name",
        ),
        (
            "SELECT embed(text, 'tiny', NULL, id) FROM docs",
            "fourth argument must be a number",
        ),
    ] {
        let err = match ctx.sql(sql).await {
            Err(e) => e.to_string(),
            Ok(df) => df.collect().await.unwrap_err().to_string(),
        };
        assert!(err.contains(wanted), "{sql}: {err}");
    }
}
