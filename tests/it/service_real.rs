//! EmbedService with the real all-MiniLM-L6-v2: concurrent callers get
//! exactly the vectors a direct call gives. `#[ignore]`d in a plain `cargo
//! test` (it needs the weights); `scripts/test.sh` runs it.
// Runs the BERT backend: built only with the `candle` feature.
#![cfg(feature = "candle")]

use std::time::Duration;

use crate::common::{max_abs_diff, real_model};
use membatch::service::EmbedService;
use membatch::Embedder;
use membatch_testkit::corpus::mixed_corpus;

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn sixty_four_callers_get_the_vectors_a_direct_call_gives() {
    let direct = real_model();
    let svc = EmbedService::builder(real_model()).spawn().unwrap();
    let corpus = mixed_corpus(256, 7);
    // Caller i sends texts i*4 .. i*4+k, k = 1..=4 (a few short and long).
    let requests: Vec<Vec<String>> = (0..64)
        .map(|i| corpus[i * 4..i * 4 + 1 + i % 4].to_vec())
        .collect();
    let callers: Vec<_> = requests
        .iter()
        .cloned()
        .map(|texts| {
            let svc = svc.clone();
            std::thread::spawn(move || svc.embed_timeout(&texts, Duration::from_secs(300)).unwrap())
        })
        .collect();
    for (texts, caller) in requests.iter().zip(callers) {
        let got = caller.join().unwrap();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let want = direct.embed(&texts).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            let d = max_abs_diff(g, w);
            assert!(d <= 1e-5, "{d}");
        }
    }
    let m = svc.metrics();
    assert_eq!(m.completed, 64);
    assert!(m.batch_requests.max > 1.0, "{:?}", m.batch_requests);
    svc.shutdown(Duration::from_secs(10));
}
