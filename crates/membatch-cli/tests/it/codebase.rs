//! `membatch codebase`: chunk ranges, the incremental cache, what it skips
//! and why, interruptions, and search. The real model is used only where
//! meaning matters (the ranking test, `#[ignore]`d in a plain `cargo test`
//! and run by scripts/test.sh); the rest runs a tiny random model.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use membatch_testkit::tiny::{tiny_model_dir, Tiny};
use serde_json::Value;

/// Runs `membatch codebase ARGS...`.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_membatch"))
        .arg("codebase")
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("MEMBATCH_MODEL")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One JSON value per line of the output (`query --json`).
fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs `index DIR --out OUT --model MODEL` with `extra` arguments.
fn run_index(model: &Path, dir: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "index",
        dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
    ];
    args.extend(extra);
    run(&args)
}

/// Runs `index --json` and returns its summary.
fn index(model: &Path, dir: &Path, out: &Path, extra: &[&str]) -> Value {
    let mut extra = extra.to_vec();
    extra.push("--json");
    let o = run_index(model, dir, out, &extra);
    assert!(o.status.success(), "index failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("one JSON object")
}

/// The chunks of the index `CURRENT` names, in row order.
fn chunks(out: &Path) -> Vec<Value> {
    let gen = std::fs::read_to_string(out.join("CURRENT")).unwrap();
    std::fs::read_to_string(out.join(gen.trim()).join("chunks.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn write(root: &Path, rel: &str, body: impl AsRef<[u8]>) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

fn lines(n: usize, tag: &str) -> String {
    (1..=n)
        .map(|i| format!("{tag} line {i} alpha beta gamma delta\n"))
        .collect()
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

struct Setup {
    _model: tempfile::TempDir,
    model: PathBuf,
    tree: tempfile::TempDir,
    out: tempfile::TempDir,
}

fn setup() -> Setup {
    let model = tiny_model_dir(&Tiny::default());
    Setup {
        model: model.path().to_path_buf(),
        _model: model,
        tree: tempfile::tempdir().unwrap(),
        out: tempfile::tempdir().unwrap(),
    }
}

#[test]
fn chunks_carry_their_byte_and_line_ranges_and_cover_the_file() {
    let s = setup();
    let body = lines(40, "a");
    write(s.tree.path(), "a.txt", &body);
    let summary = index(&s.model, s.tree.path(), s.out.path(), &[]);
    let all = chunks(s.out.path());
    assert!(all.len() > 3, "a 40-line file makes several chunks");
    assert_eq!(n(&summary, "chunks"), all.len() as u64);
    let mut covered = [false; 41];
    for c in &all {
        assert_eq!(c["path"], "a.txt");
        let (start, end) = (n(c, "start_byte") as usize, n(c, "end_byte") as usize);
        let slice = &body[start..end];
        let first_line = body[..start].matches('\n').count() + 1;
        let last_line = body[..end - 1].matches('\n').count() + 1;
        assert_eq!(n(c, "start_line") as usize, first_line, "{c}");
        assert_eq!(n(c, "end_line") as usize, last_line, "{c}");
        assert!(
            slice.starts_with(c["text"].as_str().unwrap().lines().next().unwrap()),
            "{c}"
        );
        covered[first_line..=last_line].fill(true);
    }
    assert!(covered[1..].iter().all(|&c| c), "every line is in a chunk");
    // The index's matrix has one row per chunk.
    let gen = std::fs::read_to_string(s.out.path().join("CURRENT")).unwrap();
    let bytes =
        std::fs::read(s.out.path().join(gen.trim()).join("embeddings.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("embeddings").unwrap();
    assert_eq!(t.shape(), [all.len(), membatch_testkit::tiny::TINY_HIDDEN]);
}

#[test]
fn reruns_reuse_edits_reembed_and_deletions_disappear() {
    let s = setup();
    let t = s.tree.path();
    write(t, "a.txt", lines(20, "a"));
    write(t, "b/b.txt", lines(20, "b"));
    write(t, "c.txt", lines(20, "c"));
    let first = index(&s.model, t, s.out.path(), &[]);
    let total = n(&first, "chunks");
    assert_eq!((n(&first, "embedded"), n(&first, "reused")), (total, 0));
    assert_eq!(n(&first, "files"), 3);

    let second = index(&s.model, t, s.out.path(), &[]);
    assert_eq!((n(&second, "embedded"), n(&second, "reused")), (0, total));

    let b_chunks = chunks(s.out.path())
        .iter()
        .filter(|c| c["path"] == "b/b.txt")
        .count() as u64;
    write(t, "b/b.txt", lines(20, "B"));
    let third = index(&s.model, t, s.out.path(), &[]);
    let embedded = n(&third, "embedded");
    assert!(
        (1..=b_chunks).contains(&embedded),
        "only b's chunks are embedded again: {third}"
    );
    assert_eq!(n(&third, "reused"), n(&third, "chunks") - embedded);

    std::fs::remove_file(t.join("c.txt")).unwrap();
    let fourth = index(&s.model, t, s.out.path(), &[]);
    assert_eq!(n(&fourth, "embedded"), 0);
    let paths: Vec<Value> = chunks(s.out.path())
        .iter()
        .map(|c| c["path"].clone())
        .collect();
    assert!(!paths.contains(&Value::from("c.txt")), "{paths:?}");
    assert!(paths.contains(&Value::from("a.txt")));
    let gens = std::fs::read_dir(s.out.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("gen-")
        })
        .count();
    assert_eq!(gens, 1, "old generations are removed");
}

#[test]
fn what_is_skipped_and_why() {
    let s = setup();
    let t = s.tree.path();
    write(t, ".gitignore", "ignored.txt\nbuild/\n");
    write(t, "ignored.txt", "never indexed");
    write(t, "build/out.txt", "never indexed");
    write(t, "good.txt", lines(5, "good"));
    write(t, "bin.dat", b"\x7fELF\0\0\0binary\0data");
    write(t, "bad.txt", b"fine so far \xff\xfe then broken");
    // 50 MB of text: over the default 1 MiB limit.
    write(t, "big.txt", "x".repeat(50 << 20));
    // Unreadable even as root: reading /proc/self/mem at offset 0 fails.
    std::os::unix::fs::symlink("/proc/self/mem", t.join("mem.txt")).unwrap();
    // A symlink loop.
    std::os::unix::fs::symlink(".", t.join("loop")).unwrap();
    let summary = index(&s.model, t, s.out.path(), &[]);
    assert_eq!(n(&summary, "files"), 1, "{summary}");
    let paths: Vec<Value> = chunks(s.out.path())
        .iter()
        .map(|c| c["path"].clone())
        .collect();
    assert!(paths.iter().all(|p| p == "good.txt"), "{paths:?}");
    let skipped = summary["skipped"].as_array().unwrap();
    let reason = |path: &str| -> String {
        skipped
            .iter()
            .find(|s| s["path"] == path)
            .unwrap_or_else(|| panic!("{path} not reported in {summary}"))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(reason("bin.dat").contains("binary"));
    assert!(reason("bad.txt").contains("not valid UTF-8"));
    assert!(reason("big.txt").contains("larger than --max-file-size"));
    assert!(reason("mem.txt").contains("cannot read"));
    assert!(reason("loop").contains("loop"), "{}", reason("loop"));
    assert!(!summary.to_string().contains("ignored.txt"));
    assert!(!summary.to_string().contains("build/"));

    // In text mode each skip is one stderr line.
    let o = run_index(&s.model, t, s.out.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("skipped big.txt: 50.0 MiB is larger than --max-file-size"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn empty_and_missing_directories() {
    let s = setup();
    let summary = index(&s.model, s.tree.path(), s.out.path(), &[]);
    assert_eq!((n(&summary, "files"), n(&summary, "chunks")), (0, 0));
    let o = run_index(&s.model, s.tree.path(), s.out.path(), &[]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing to index"));

    let missing = s.tree.path().join("nope");
    let o = run_index(&s.model, &missing, s.out.path(), &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no such directory"), "{err}");

    let o = run(&["query", missing.to_str().unwrap(), "anything"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no index here"), "{}", stderr(&o));
}

#[test]
fn crlf_multibyte_empty_and_whitespace_files() {
    let s = setup();
    let t = s.tree.path();
    write(t, "crlf.txt", "first line\r\nsecond line\r\n\r\nthird\r\n");
    write(
        t,
        "utf8.md",
        "# Über naïve café\n\n数据 and ✓ marks — fine.\n",
    );
    write(t, "empty.txt", "");
    write(t, "blank.txt", "  \n\t\n   \n");
    let summary = index(&s.model, t, s.out.path(), &[]);
    assert_eq!(n(&summary, "files"), 4, "{summary}");
    let all = chunks(s.out.path());
    let paths: Vec<&str> = all.iter().map(|c| c["path"].as_str().unwrap()).collect();
    assert!(
        paths.contains(&"crlf.txt") && paths.contains(&"utf8.md"),
        "{paths:?}"
    );
    assert!(
        !paths.contains(&"empty.txt") && !paths.contains(&"blank.txt"),
        "no chunks for nothing"
    );
    let crlf = all.iter().find(|c| c["path"] == "crlf.txt").unwrap();
    assert_eq!((n(crlf, "start_line"), n(crlf, "end_line")), (1, 4));
    let utf8 = all.iter().find(|c| c["path"] == "utf8.md").unwrap();
    let body = std::fs::read_to_string(t.join("utf8.md")).unwrap();
    let (a, b) = (n(utf8, "start_byte") as usize, n(utf8, "end_byte") as usize);
    assert!(body.is_char_boundary(a) && body.is_char_boundary(b));
}

#[test]
fn a_deleted_then_restored_file_is_embedded_again() {
    let s = setup();
    let t = s.tree.path();
    write(t, "keep.txt", lines(10, "keep"));
    write(t, "gone.txt", lines(10, "gone"));
    let first = index(&s.model, t, s.out.path(), &[]);
    let stash = tempfile::tempdir().unwrap();
    std::fs::rename(t.join("gone.txt"), stash.path().join("gone.txt")).unwrap();
    let without = index(&s.model, t, s.out.path(), &[]);
    let gone_chunks = n(&first, "chunks") - n(&without, "chunks");
    assert!(gone_chunks > 0);
    std::fs::rename(stash.path().join("gone.txt"), t.join("gone.txt")).unwrap();
    let back = index(&s.model, t, s.out.path(), &[]);
    assert_eq!(
        n(&back, "embedded"),
        gone_chunks,
        "the cache forgot the deleted file's vectors: {back}"
    );
}

#[test]
fn an_index_inside_the_tree_is_not_indexed_and_an_empty_index_answers_nothing() {
    let s = setup();
    let t = s.tree.path();
    write(t, "a.txt", lines(5, "a"));
    let out = t.join("idx");
    index(&s.model, t, &out, &[]);
    let second = index(&s.model, t, &out, &[]);
    assert_eq!(
        n(&second, "files"),
        1,
        "the index's own files are skipped: {second}"
    );

    let empty = tempfile::tempdir().unwrap();
    let out2 = tempfile::tempdir().unwrap();
    index(&s.model, empty.path(), out2.path(), &[]);
    let q = run(&[
        "query",
        out2.path().to_str().unwrap(),
        "anything",
        "--model",
        s.model.to_str().unwrap(),
        "--json",
    ]);
    assert!(q.status.success(), "{}", stderr(&q));
    assert!(q.stdout.is_empty());
}

#[test]
#[ignore = "needs the real weights: scripts/test.sh fetches them and runs this"]
fn a_query_ranks_the_file_with_the_phrase_first() {
    let model = membatch::ModelSource::default_model();
    let tree = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let t = tree.path();
    write(
        t,
        "kitchen/bread.md",
        "# Sourdough\n\nFeed the starter, mix flour and water, let the dough rise overnight, then bake the loaf in a hot oven until the crust is dark.\n",
    );
    write(
        t,
        "space/telescopes.md",
        "# Observing\n\nA refracting telescope gathers light from distant galaxies and nebulae; dark skies away from city lights help.\n",
    );
    write(
        t,
        "net/sockets.rs",
        "// Opens a TCP connection to the server and retries with backoff when the socket is refused.\nfn connect(addr: &str) {}\n",
    );
    let model_arg = match &model {
        membatch::ModelSource::Dir(p) => p.display().to_string(),
        membatch::ModelSource::Hub(h) => h.repo_id.clone(),
        other => panic!("unexpected source {other}"),
    };
    let o = run(&[
        "index",
        t.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
        "--model",
        &model_arg,
        "--json",
    ]);
    assert!(
        o.status.success(),
        "the real model is required: {}",
        stderr(&o)
    );
    let o = run(&[
        "query",
        out.path().to_str().unwrap(),
        "how do I bake bread with a sourdough starter",
        "-k",
        "3",
        "--model",
        &model_arg,
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let hits = json_lines(&o);
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0]["path"], "kitchen/bread.md", "{hits:?}");
    assert_eq!((n(&hits[0], "start_line"), n(&hits[0], "end_line")), (1, 3));
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );

    // Another model than the index's is refused.
    let tiny = tiny_model_dir(&Tiny::default());
    let o = run(&[
        "query",
        out.path().to_str().unwrap(),
        "bread",
        "--model",
        tiny.path().to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("same --model"), "{}", stderr(&o));
}

#[test]
fn an_older_variable_name_works_and_says_its_new_name_in_json_logs() {
    let s = setup();
    write(s.tree.path(), "a.txt", lines(3, "a"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_membatch"));
    cmd.args([
        "codebase",
        "index",
        s.tree.path().to_str().unwrap(),
        "--out",
    ])
    .arg(s.out.path())
    .args(["--model", s.model.to_str().unwrap(), "--json"])
    .args(["--log-format", "json"])
    .env_remove("RUST_LOG");
    // Only this test's variable: no other setting's line in the log.
    for setting in membatch::settings::all() {
        for var in std::iter::once(setting.env()).chain(setting.aliases().iter().copied()) {
            cmd.env_remove(var);
        }
    }
    let o = cmd.env("EMBEDDING_THREADS", "1").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let logs: Vec<Value> = stderr(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0]["level"], "WARN");
    let message = logs[0]["fields"]["message"].as_str().unwrap();
    assert!(
        message.contains("EMBEDDING_THREADS is an older name of MEMBATCH_THREADS"),
        "{message}"
    );
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(n(&summary, "files"), 1);

    // A bad value through the flag is an argument error naming the flag.
    let bad = run_index(&s.model, s.tree.path(), s.out.path(), &["--threads", "0"]);
    assert_eq!(bad.status.code(), Some(2));
    let err = stderr(&bad);
    assert!(
        err.starts_with("membatch: invalid value '0' for '--threads"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// The index's vectors, row by row.
fn matrix(out: &Path) -> Vec<Vec<f32>> {
    let gen = std::fs::read_to_string(out.join("CURRENT")).unwrap();
    let bytes = std::fs::read(out.join(gen.trim()).join("embeddings.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = tensors.tensor("embeddings").unwrap();
    let d = t.shape()[1];
    t.data()
        .chunks(d * 4)
        .map(|r| {
            r.chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        })
        .collect()
}

#[test]
fn documents_and_queries_get_their_prompts_which_with_dimensions_key_the_cache() {
    let s = setup();
    membatch_testkit::tiny::write(
        &s.model,
        "config_sentence_transformers.json",
        r#"{"prompts": {"query": "the quick ", "document": "a man ", "passage": "lazy "}, "default_prompt_name": null}"#,
    );
    let body = "hello world\n";
    write(s.tree.path(), "a.txt", body);
    let (model, tree, out) = (&s.model, s.tree.path(), s.out.path());
    let summary = index(model, tree, out, &[]);
    assert_eq!(n(&summary, "embedded"), 1);
    let chunk = &chunks(out)[0];
    let text = &body[n(chunk, "start_byte") as usize..n(chunk, "end_byte") as usize];
    let library = membatch::BertEmbedder::load(membatch::ModelSource::dir(model)).unwrap();
    let document = library.embed_with_prompt("document", &[text]).unwrap();
    let row = &matrix(out)[0];
    let diff = row
        .iter()
        .zip(&document[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff <= 1e-6, "chunks get the document prompt: {diff}");

    // The query gets the query prompt: its score is the cosine of the two.
    let query = library.embed_with_prompt("query", &["hello"]).unwrap();
    let cosine: f32 = query[0].iter().zip(row).map(|(a, b)| a * b).sum();
    let o = run(&[
        "query",
        out.to_str().unwrap(),
        "hello",
        "--model",
        model.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let score = json_lines(&o)[0]["score"].as_f64().unwrap() as f32;
    assert!((score - cosine).abs() < 1e-5, "{score} vs {cosine}");

    // Another prompt, or fewer dimensions: embedded again, not reused.
    let again = |extra: &[&str]| {
        let summary = index(model, tree, out, extra);
        (n(&summary, "embedded"), n(&summary, "reused"))
    };
    assert_eq!(again(&[]), (0, 1), "the same settings reuse");
    assert_eq!(again(&["--prompt-name", "passage"]), (1, 0));
    assert_eq!(again(&["--prompt-name", "passage"]), (0, 1));
    assert_eq!(again(&["--dimensions", "8"]), (1, 0));
    assert_eq!(matrix(out)[0].len(), 8);
    let query_with = |extra: &[&str]| {
        let mut args = vec![
            "query",
            out.to_str().unwrap(),
            "hello",
            "--model",
            model.to_str().unwrap(),
        ];
        args.extend(extra);
        run(&args)
    };
    let o = query_with(&[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--dimensions"), "{}", stderr(&o));
    assert!(query_with(&["--dimensions", "8"]).status.success());
    let o = query_with(&["--dimensions", "8", "--query-prompt-name", "nope"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("the model's prompts are: document, passage, query"),
        "{}",
        stderr(&o)
    );
    // An unknown document prompt fails before anything is written.
    let o = run_index(model, tree, out, &["--prompt-name", "nope"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
    assert_eq!(matrix(out)[0].len(), 8, "the index is untouched");
}

#[test]
fn a_full_chunk_fits_the_model_with_its_prompt() {
    let s = setup();
    membatch_testkit::tiny::write(
        &s.model,
        "config_sentence_transformers.json",
        r#"{"prompts": {"document": "a man is eating "}}"#,
    );
    write(
        s.tree.path(),
        "long.txt",
        "the quick brown fox ".repeat(200),
    );
    index(&s.model, s.tree.path(), s.out.path(), &[]);
    let body = std::fs::read_to_string(s.tree.path().join("long.txt")).unwrap();
    let library = membatch::BertEmbedder::load(membatch::ModelSource::dir(&s.model)).unwrap();
    let all = chunks(s.out.path());
    assert!(all.len() > 5);
    for c in &all {
        let text = &body[n(c, "start_byte") as usize..n(c, "end_byte") as usize];
        let tokens = membatch::Embedder::tokenize_prompted(&library, &[text], Some("document"))
            .unwrap()
            .remove(0);
        assert!(
            !tokens.is_truncated(),
            "{} tokens with the prompt: cut",
            tokens.len()
        );
    }
}
