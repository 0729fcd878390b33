//! Public types can be shared across threads, and the trait is object-safe.

use std::sync::Arc;

use membatch::batch::{BatchEmbedder, BatchMetrics, EmbeddedBatch};
use membatch::memory::MemoryBudget;
use membatch::{Config, Embedder, Error, ModelSource};

fn send_sync<T: Send + Sync>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Error>();
    send_sync::<ModelSource>();
    send_sync::<Arc<dyn Embedder>>();
    send_sync::<BatchEmbedder<Arc<dyn Embedder>>>();
    send_sync::<BatchMetrics>();
    send_sync::<EmbeddedBatch>();
    send_sync::<Config>();
    send_sync::<MemoryBudget>();
    #[cfg(feature = "candle")]
    {
        send_sync::<membatch::BertEmbedder>();
        send_sync::<BatchEmbedder<membatch::BertEmbedder>>();
        send_sync::<membatch::TokenCounter>();
    }
}

#[test]
fn embedder_is_object_safe_and_pointers_forward() {
    struct Constant;
    impl Embedder for Constant {
        fn info(&self) -> membatch::ModelInfo {
            membatch::ModelInfo::new(2, 7)
        }
        fn tokenize(&self, texts: &[&str]) -> membatch::Result<Vec<membatch::Tokens>> {
            Ok(texts
                .iter()
                .map(|t| membatch::Tokens::new(vec![0; t.len()]))
                .collect())
        }
        fn embed_tokens(&self, batch: &[&membatch::Tokens]) -> membatch::Result<Vec<Vec<f32>>> {
            Ok(batch.iter().map(|_| vec![1.0, 2.0]).collect())
        }
    }
    fn generic<E: Embedder>(e: E) -> (usize, usize) {
        (e.info().dimension, e.embed(&["a", "b"]).unwrap().len())
    }
    let shared: Arc<dyn Embedder> = Arc::new(Constant);
    assert_eq!(generic(shared.clone()), (2, 2));
    assert_eq!(generic(&*shared), (2, 2));
    let boxed: Box<dyn Embedder> = Box::new(Constant);
    assert_eq!(boxed.info().max_seq_length, 7);
    assert_eq!(
        boxed.tokenize(&["abc"]).unwrap(),
        vec![membatch::Tokens::new(vec![0; 3])]
    );
}
