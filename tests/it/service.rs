//! EmbedService over scripted fakes: every caller gets its own vectors,
//! batches merge callers, faults reach exactly the callers they concern,
//! admission refuses at once, the model loads lazily and unloads, and
//! shutdown answers everyone. Every wait is bounded: a hang fails.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fakes::{text, Fake, Machine, Scripted, ScriptedReranker, MIB};
use membatch::service::{EmbedService, ServiceConfig};
use membatch::{EmbedOptions, Truncation};
use membatch::{Embedder, Error, ModelInfo, ModelState, Result, Tokens};
use membatch::{LazyEmbedder, ModelLoader};

const PATIENCE: Duration = Duration::from_secs(20);

/// A service over `embedder` with `config`, on a roomy simulated machine.
fn service(embedder: impl Embedder + 'static, config: ServiceConfig) -> EmbedService {
    let machine = Machine::new(50 * MIB);
    EmbedService::builder(embedder)
        .budget(machine.budget(900 * MIB))
        .config(config)
        .spawn()
        .unwrap()
}

fn scripted() -> Arc<Scripted> {
    Arc::new(Scripted::default())
}

/// A deterministic request of 1–8 texts of 1–40 words for caller `i`.
fn request(i: usize) -> Vec<String> {
    let n = 1 + (i * 7919) % 8;
    (0..n)
        .map(|k| text(i * 100 + k, 1 + (i * 31 + k * 17) % 40))
        .collect()
}

fn expected(texts: &[String]) -> Vec<Vec<f32>> {
    texts.iter().map(|t| Fake::vector(t)).collect()
}

/// `n` callers at once, each on a thread of its own sending `request(i)`:
/// every one gets its own vectors.
fn callers_get_their_vectors(svc: &EmbedService, n: usize) {
    let callers: Vec<_> = (0..n)
        .map(|i| {
            let svc = svc.clone();
            std::thread::spawn(move || {
                let texts = request(i);
                let got = svc.embed_timeout(&texts, PATIENCE).unwrap();
                assert_eq!(got, expected(&texts), "caller {i}");
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
}

#[test]
fn sixty_four_threads_each_get_their_own_vectors_in_merged_batches() {
    let embedder = Arc::new(Scripted {
        delay: Duration::from_millis(3),
        ..Scripted::default()
    });
    let svc = service(embedder.clone(), ServiceConfig::default());
    callers_get_their_vectors(&svc, 64);
    let m = svc.metrics();
    assert_eq!((m.accepted, m.completed, m.failed), (64, 64, 0));
    let texts: usize = (0..64).map(|i| request(i).len()).sum();
    assert_eq!(m.texts as usize, texts);
    assert!(
        m.batch_requests.max > 1.0,
        "batches merged callers: {:?}",
        m.batch_requests
    );
    assert!(m.batches < 64, "fewer batches than callers: {}", m.batches);
    svc.shutdown(Duration::from_secs(5));
}

#[test]
fn sixty_four_tasks_on_an_async_executor_each_get_their_own_vectors() {
    let embedder = Arc::new(Scripted {
        delay: Duration::from_millis(3),
        ..Scripted::default()
    });
    let svc = service(embedder, ServiceConfig::default());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let svc = svc.clone();
                tokio::spawn(async move {
                    let texts = request(i);
                    let got = tokio::time::timeout(PATIENCE, svc.embed_async(&texts))
                        .await
                        .expect("answered in time")
                        .unwrap();
                    assert_eq!(got, expected(&texts), "task {i}");
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let m = svc.metrics();
    assert_eq!(m.completed, 64);
    assert!(m.batch_requests.max > 1.0, "{:?}", m.batch_requests);
}

/// Holds the worker at the gate with one request, queues `requests`
/// behind it, then opens the gate: the queued ones run together.
fn queued_behind_a_held_batch(
    embedder: &Arc<Scripted>,
    svc: &EmbedService,
    requests: &[Vec<String>],
) -> Vec<Result<Vec<Vec<f32>>>> {
    embedder.gate.close();
    let first = svc.submit(&["holds the worker"]).unwrap();
    embedder.gate.wait_for_a_batch();
    let pending: Vec<_> = requests.iter().map(|r| svc.submit(r).unwrap()).collect();
    embedder.gate.open();
    first.wait_timeout(PATIENCE).unwrap();
    pending
        .into_iter()
        .map(|p| p.wait_timeout(PATIENCE))
        .collect()
}

#[test]
fn an_error_in_a_batch_reaches_every_caller_in_it_and_later_requests_succeed() {
    let embedder = scripted();
    let svc = service(embedder.clone(), ServiceConfig::default());
    let answers = queued_behind_a_held_batch(
        &embedder,
        &svc,
        &[
            vec!["one".into()],
            vec!["an ERROR here".into()],
            vec!["three".into(), "four".into()],
        ],
    );
    for a in &answers {
        assert!(matches!(a, Err(Error::Inference(_))), "{a:?}");
    }
    assert_eq!(
        svc.embed_timeout(&["later"], PATIENCE).unwrap(),
        expected(&["later".into()])
    );
    assert!(svc.is_serving());
    assert_eq!(svc.metrics().failed, 3);
}

#[test]
fn a_panic_in_a_batch_is_contained_and_the_service_keeps_serving() {
    let embedder = scripted();
    let svc = service(embedder.clone(), ServiceConfig::default());
    let answers = queued_behind_a_held_batch(
        &embedder,
        &svc,
        &[vec!["a PANIC".into()], vec!["a neighbour".into()]],
    );
    for a in &answers {
        assert!(
            matches!(a, Err(Error::EmbedderPanicked { message }) if message.contains("scripted panic")),
            "{a:?}"
        );
    }
    for i in 0..5 {
        let texts = request(i);
        assert_eq!(
            svc.embed_timeout(&texts, PATIENCE).unwrap(),
            expected(&texts)
        );
    }
    let m = svc.metrics();
    assert_eq!(m.panics, 1);
    assert!(m.serving);
}

#[test]
fn a_worker_that_cannot_go_on_fails_every_queued_and_later_caller_at_once() {
    let embedder = Arc::new(Scripted {
        always_panic: true,
        ..Scripted::default()
    });
    let config = ServiceConfig::builder()
        .max_consecutive_panics(3)
        .window_texts(1)
        .build()
        .unwrap();
    let svc = service(embedder.clone(), config);
    // Queue ten one-text requests behind a held batch; each window holds
    // one of them, so three panic in a row and the worker gives up.
    embedder.gate.close();
    let first = svc.submit(&["first"]).unwrap();
    embedder.gate.wait_for_a_batch();
    let pending: Vec<_> = (0..10)
        .map(|i| svc.submit(&[format!("request {i}")]).unwrap())
        .collect();
    let started = Instant::now();
    embedder.gate.open();
    let first = first.wait_timeout(PATIENCE);
    assert!(
        matches!(first, Err(Error::EmbedderPanicked { .. })),
        "{first:?}"
    );
    let mut worker_failed = 0;
    for p in pending {
        match p.wait_timeout(PATIENCE) {
            Err(Error::EmbedderPanicked { .. }) => {}
            Err(Error::WorkerFailed { cause }) => {
                assert!(matches!(*cause, Error::EmbedderPanicked { .. }), "{cause}");
                worker_failed += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        worker_failed, 8,
        "two panicked after the first, the rest failed at once"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "no hang");
    // Later callers are refused at once, and the service says it is down.
    let started = Instant::now();
    let later = svc.submit(&["later"]);
    assert!(
        matches!(later, Err(Error::WorkerFailed { .. })),
        "{later:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(!svc.is_serving());
    assert!(svc.failure().is_some());
}

#[test]
fn a_worker_dropped_without_running_fails_callers_instead_of_leaving_them_waiting() {
    let (svc, worker) = EmbedService::builder(Fake::new(&Machine::new(50 * MIB)))
        .build()
        .unwrap();
    drop(worker);
    let r = svc.submit(&["anyone there?"]);
    assert!(matches!(r, Err(Error::WorkerFailed { .. })), "{r:?}");
    assert!(!svc.is_serving());
}

#[test]
fn a_caller_that_gave_up_has_its_texts_skipped() {
    let embedder = scripted();
    let svc = service(embedder.clone(), ServiceConfig::default());
    embedder.gate.close();
    let first = svc.submit(&["holds the worker"]).unwrap();
    embedder.gate.wait_for_a_batch();
    let dropped = svc.submit(&["never run: dropped"]).unwrap();
    drop(dropped);
    let timed_out = svc
        .submit(&["never run: timed out"])
        .unwrap()
        .wait_timeout(Duration::from_millis(20));
    assert!(
        matches!(timed_out, Err(Error::TimedOut { .. })),
        "{timed_out:?}"
    );
    let kept = svc.submit(&["kept"]).unwrap();
    embedder.gate.open();
    first.wait_timeout(PATIENCE).unwrap();
    kept.wait_timeout(PATIENCE).unwrap();
    let embedded = embedder.embedded.lock().clone();
    assert!(embedded.contains(&"kept".to_string()), "{embedded:?}");
    assert!(
        !embedded.iter().any(|t| t.starts_with("never run")),
        "{embedded:?}"
    );
    assert_eq!(svc.metrics().cancelled, 2);
}

#[test]
fn a_full_queue_refuses_at_once_with_a_time_to_retry() {
    let embedder = scripted();
    let config = ServiceConfig::builder()
        .max_queued_requests(2)
        .max_queued_tokens(40)
        .max_tokens_per_request(40)
        .build()
        .unwrap();
    let svc = service(embedder.clone(), config);
    embedder.gate.close();
    let first = svc.submit(&["holds the worker"]).unwrap();
    embedder.gate.wait_for_a_batch();
    // The queue: two requests...
    let a = svc.submit(&["one two"]).unwrap();
    let b = svc.submit(&["three four"]).unwrap();
    let started = Instant::now();
    let refused = svc.submit(&["five"]);
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "refused at once"
    );
    match refused {
        Err(Error::Overloaded {
            retry_after,
            queued_requests: 2,
            ..
        }) => assert!(retry_after > Duration::ZERO),
        other => panic!("{other:?}"),
    }
    embedder.gate.open();
    for p in [first, a, b] {
        p.wait_timeout(PATIENCE).unwrap();
    }
    // ...and in tokens: 3 requests of 12 tokens fit 40, a fourth does not.
    embedder.gate.close();
    let first = svc.submit(&["holds the worker"]).unwrap();
    embedder.gate.wait_for_a_batch();
    let ten_words = "a b c d e f g h i j";
    let a = svc.submit(&[ten_words, ten_words, ten_words]).unwrap();
    let refused = svc.submit(&[ten_words]);
    assert!(
        matches!(
            refused,
            Err(Error::Overloaded {
                queued_tokens: 36,
                tokens: 12,
                ..
            })
        ),
        "{refused:?}"
    );
    embedder.gate.open();
    first.wait_timeout(PATIENCE).unwrap();
    a.wait_timeout(PATIENCE).unwrap();
    assert_eq!(svc.metrics().refused.overloaded, 2);
}

#[test]
fn per_request_limits_are_typed_errors() {
    let config = ServiceConfig::builder()
        .max_inputs_per_request(4)
        .max_tokens_per_request(20)
        .build()
        .unwrap();
    let svc = service(scripted(), config);
    let r = svc.submit(&["a"; 5]);
    assert!(
        matches!(
            r,
            Err(Error::RequestTooLarge {
                limit: "inputs",
                got: 5,
                max: 4
            })
        ),
        "{r:?}"
    );
    let r = svc.submit(&["one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen"]);
    assert!(
        matches!(
            r,
            Err(Error::RequestTooLarge {
                limit: "tokens",
                got: 21,
                max: 20
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        svc.embed_timeout(&[] as &[&str], PATIENCE).unwrap().len(),
        0
    );
    assert_eq!(svc.metrics().refused.too_large, 2);
}

#[test]
fn critical_memory_refuses_new_work_until_it_recovers() {
    let machine = Machine::new(100 * MIB);
    let svc = EmbedService::builder(scripted())
        .budget(machine.budget(200 * MIB))
        .spawn()
        .unwrap();
    assert!(svc.embed_timeout(&["fine"], PATIENCE).is_ok());
    machine.set_base(192 * MIB); // 96% of the budget
    match svc.submit(&["too much"]) {
        Err(Error::MemoryCritical {
            figure_bytes,
            budget_bytes,
            retry_after,
        }) => {
            assert_eq!((figure_bytes, budget_bytes), (192 * MIB, 200 * MIB));
            assert!(retry_after > Duration::ZERO);
        }
        other => panic!("{other:?}"),
    }
    // 93% is under the critical threshold but within its hysteresis.
    machine.set_base(186 * MIB);
    assert!(matches!(
        svc.submit(&["still"]),
        Err(Error::MemoryCritical { .. })
    ));
    machine.set_base(100 * MIB);
    assert!(svc.embed_timeout(&["recovered"], PATIENCE).is_ok());
    assert_eq!(svc.metrics().refused.memory_critical, 2);
}

#[test]
fn under_memory_pressure_batches_are_smaller() {
    let run = |base: u64| {
        let machine = Machine::new(base);
        let fake = Fake::new(&machine);
        let svc = EmbedService::builder(fake)
            .budget(machine.budget(400 * MIB))
            .spawn()
            .unwrap();
        let texts: Vec<String> = (0..16).map(|i| text(i, 200)).collect();
        let got = svc.embed_timeout(&texts, PATIENCE).unwrap();
        assert_eq!(got, expected(&texts));
        svc.metrics().batch_texts.max
    };
    let normal = run(50 * MIB);
    let degraded = run(355 * MIB); // 89% of the budget: the degraded band
    assert!(normal >= 8.0, "{normal}");
    assert!(degraded < normal, "degraded {degraded}, normal {normal}");
}

/// A loader whose model is the scripted fake, slow to load, counted.
#[derive(Default)]
struct SlowLoader {
    loads: AtomicU64,
}

impl ModelLoader for SlowLoader {
    type Model = Scripted;
    fn load(&self) -> Result<Scripted> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        Ok(Scripted::default())
    }
    fn info(&self) -> ModelInfo {
        Scripted::default().info()
    }
    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        Scripted::default().tokenize(texts)
    }
}

#[test]
fn a_lazy_model_loads_once_for_concurrent_first_requests_and_reloads_after_unload() {
    let lazy = Arc::new(LazyEmbedder::new(SlowLoader::default()));
    let svc = service(lazy.clone(), ServiceConfig::default());
    assert!(matches!(svc.model_state(), ModelState::Unloaded));
    // Tokenizing (what admission does) comes from the loader: no load.
    lazy.tokenize(&["no load"]).unwrap();
    assert_eq!(lazy.loads(), 0);
    callers_get_their_vectors(&svc, 16);
    assert_eq!(lazy.loads(), 1, "one load for sixteen first requests");
    assert!(svc.model_state().is_loaded());
    let report = svc.unload();
    assert!(report.freed);
    assert!(matches!(svc.model_state(), ModelState::Unloaded));
    assert_eq!(svc.metrics().unloads, 1);
    assert!(svc.embed_timeout(&["again"], PATIENCE).is_ok());
    assert_eq!(lazy.loads(), 2, "the next request reloads");
}

#[test]
fn idle_unload_happens_only_when_idle() {
    let lazy = Arc::new(LazyEmbedder::new(SlowLoader::default()));
    let config = ServiceConfig::builder()
        .idle_unload(Duration::from_millis(150))
        .build()
        .unwrap();
    let svc = service(lazy.clone(), config);
    // A stream of requests closer together than the idle time keeps the
    // model loaded.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(600) {
        svc.embed_timeout(&["busy"], PATIENCE).unwrap();
        assert!(svc.model_state().is_loaded(), "unloaded while in use");
        std::thread::sleep(Duration::from_millis(40));
    }
    assert_eq!(lazy.loads(), 1);
    // Then idle: unloaded after the idle time, without a request.
    let idle = Instant::now();
    while svc.model_state().is_loaded() {
        assert!(idle.elapsed() < Duration::from_secs(5), "never unloaded");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        idle.elapsed() >= Duration::from_millis(100),
        "{:?}",
        idle.elapsed()
    );
    svc.embed_timeout(&["back"], PATIENCE).unwrap();
    assert_eq!(lazy.loads(), 2);
}

#[test]
fn shutdown_drains_what_it_can_and_fails_the_rest_and_later_callers() {
    let embedder = Arc::new(Scripted {
        delay: Duration::from_millis(100),
        ..Scripted::default()
    });
    let config = ServiceConfig::builder().window_texts(1).build().unwrap();
    let svc = service(embedder.clone(), config);
    let pending: Vec<_> = (0..10)
        .map(|i| svc.submit(&[format!("text {i}")]).unwrap())
        .collect();
    let started = Instant::now();
    svc.shutdown(Duration::from_millis(250));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let (mut ok, mut closed) = (0, 0);
    for p in pending {
        match p.wait_timeout(PATIENCE) {
            Ok(_) => ok += 1,
            Err(Error::Closed) => closed += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ok + closed, 10, "everyone answered");
    assert!(ok >= 2 && closed >= 1, "ok {ok}, closed {closed}");
    assert!(matches!(svc.submit(&["late"]), Err(Error::Closed)));
    assert!(!svc.is_serving());
}

/// A service over the scripted embedder and the scripted reranker.
fn with_reranker(config: ServiceConfig) -> (EmbedService, Arc<Scripted>, Arc<ScriptedReranker>) {
    let embedder = scripted();
    let reranker = Arc::new(ScriptedReranker::default());
    let machine = Machine::new(50 * MIB);
    let svc = EmbedService::builder(embedder.clone())
        .reranker(reranker.clone())
        .budget(machine.budget(900 * MIB))
        .config(config)
        .spawn()
        .unwrap();
    (svc, embedder, reranker)
}

#[test]
fn reranks_share_the_queue_admission_and_worker_with_embeddings() {
    let config = ServiceConfig::builder()
        .max_queued_tokens(60)
        .max_tokens_per_request(60)
        .build()
        .unwrap();
    let (svc, embedder, reranker) = with_reranker(config);
    embedder.gate.close();
    let first = svc.submit(&["holds the worker"]).unwrap();
    embedder.gate.wait_for_a_batch();
    // Queued behind the embedding batch: a rerank, one its caller drops,
    // and one the queue has no room for.
    let docs = ["a b c", "a much longer document", "d"];
    let kept = svc.submit_rerank("query", &docs).unwrap();
    let dropped = svc.submit_rerank("dropped", &["never scored"]).unwrap();
    drop(dropped);
    let big = vec!["w w w w w w w w w w"; 3];
    match svc.submit_rerank("query", &big) {
        Err(Error::Overloaded { retry_after, .. }) => assert!(retry_after > Duration::ZERO),
        other => panic!("expected Overloaded, got {other:?}"),
    }
    embedder.gate.open();
    first.wait_timeout(PATIENCE).unwrap();
    let scores: Vec<f32> = kept
        .wait_timeout(PATIENCE)
        .unwrap()
        .into_iter()
        .map(|s| s[0])
        .collect();
    let want: Vec<f32> = docs
        .iter()
        .map(|d| ScriptedReranker::score_of("query", d))
        .collect();
    assert_eq!(scores, want);
    assert_eq!(
        svc.rerank("q", &["x y"]).unwrap(),
        vec![ScriptedReranker::score_of("q", "x y")]
    );
    let scored = reranker.scored.lock().clone();
    assert!(!scored.iter().any(|d| d == "never scored"), "{scored:?}");
    let m = svc.metrics();
    assert_eq!((m.embeddings.requests, m.reranks.requests), (1, 3));
    assert_eq!(m.reranks.texts, 4, "the dropped request was skipped");
    assert_eq!((m.refused.overloaded, m.cancelled), (1, 1));
    assert!(m.rerank_batch_size.is_some());
    svc.shutdown(Duration::from_secs(5));
}

#[test]
fn the_rerank_batch_rule_persists_across_requests() {
    let (svc, _, reranker) = with_reranker(ServiceConfig::default());
    let docs: Vec<String> = (0..20).map(|i| text(i, 5)).collect();
    for _ in 0..5 {
        assert_eq!(svc.rerank("query", &docs).unwrap().len(), 20);
    }
    // From 8, +4 per batch: a rule that started again with every request
    // would never pass 16 on 20 documents.
    let m = svc.metrics();
    assert!(m.rerank_batch_size.unwrap() >= 32, "{m:?}");
    assert_eq!(m.batch_size, 8, "the embedding lane's rule is its own");
    let batches = reranker.batches.lock().clone();
    assert!(batches.len() < 10, "{batches:?}");
    svc.shutdown(Duration::from_secs(5));
}

#[test]
fn a_reranker_that_keeps_panicking_fails_its_requests_not_the_embeddings() {
    let (svc, _, _) = with_reranker(ServiceConfig::default());
    for i in 0..5 {
        let err = svc.rerank("q", &[format!("PANIC {i}")]).unwrap_err();
        assert!(matches!(err, Error::EmbedderPanicked { .. }), "{err}");
    }
    assert!(
        svc.is_serving(),
        "five rerank panics in a row leave it serving"
    );
    let texts = request(1);
    assert_eq!(
        svc.embed_timeout(&texts, PATIENCE).unwrap(),
        expected(&texts)
    );
    assert_eq!(svc.rerank("q", &["ok"]).unwrap().len(), 1);
    assert_eq!(svc.metrics().panics, 5);
    svc.shutdown(Duration::from_secs(5));
}

#[test]
fn a_service_without_a_reranker_says_so() {
    let svc = service(scripted(), ServiceConfig::default());
    let err = svc.submit_rerank("q", &["d"]).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
    assert!(err.to_string().contains("reranker"), "{err}");
}

#[test]
fn every_text_is_tokenized_once_from_admission_to_the_forward_pass() {
    let embedder = Arc::new(Scripted {
        delay: Duration::from_millis(1),
        ..Scripted::default()
    });
    let svc = service(embedder.clone(), ServiceConfig::default());
    callers_get_their_vectors(&svc, 16);
    let texts: usize = (0..16).map(|i| request(i).len()).sum();
    assert_eq!(embedder.tokenized.load(Ordering::SeqCst), texts);
    assert_eq!(embedder.embedded.lock().len(), texts);
    // And through a batcher, over more texts than one window holds.
    let batcher = membatch::BatchEmbedder::new(
        Scripted::default(),
        Machine::new(50 * MIB).budget(900 * MIB),
        membatch::BatchConfig::default(),
    )
    .unwrap();
    let many: Vec<String> = (0..9000).map(|i| text(i, 1 + i % 30)).collect();
    assert_eq!(batcher.embed(&many).unwrap(), expected(&many));
    assert_eq!(batcher.embedder().tokenized.load(Ordering::SeqCst), 9000);
    svc.shutdown(Duration::from_secs(5));
}

#[test]
fn a_text_too_long_is_refused_when_asked_and_truncated_otherwise() {
    let svc = service(scripted(), ServiceConfig::default());
    let long = "w ".repeat(300);
    let texts = ["short", long.as_str()];
    let err = svc
        .submit_with(
            &texts,
            &EmbedOptions::new().with_truncation(Truncation::Refuse),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TextTooLong {
                index: 1,
                max_tokens: 256
            }
        ),
        "{err}"
    );
    assert_eq!(svc.metrics().refused.text_too_long, 1);
    assert_eq!(svc.embed(&texts).unwrap().len(), 2, "cut by default");
    svc.shutdown(Duration::from_secs(5));
}
