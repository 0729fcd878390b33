//! `membatch embed`: every input and output format gives the library's
//! vectors, prompts and dimensions chosen per run, and every bad input is
//! one line on stderr with nothing left behind. A tiny random model: what
//! matters is that the tool and the library agree.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use membatch::{BertEmbedder, EmbedOptions, Embedder, ModelSource};
use membatch_testkit::tiny::{tiny_model_dir, write, Tiny, TINY_HIDDEN};
use serde_json::Value;

/// Runs `membatch embed ARGS...` with `stdin`.
fn embed(args: &[&str], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_membatch"));
    cmd.arg("embed")
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("MEMBATCH_MODEL")
        .env_remove("MEMBATCH_PROMPT_NAME")
        .env_remove("MEMBATCH_DIMENSIONS");
    membatch_testkit::process::feed(cmd, stdin)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `out` failed with one stderr line containing `wanted`.
fn fails_with(out: &Output, wanted: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "succeeded; stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("membatch: "), "{err}");
    assert!(err.contains(wanted), "wanted {wanted:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The tiny model, with a `query` and a `document` prompt.
fn model() -> tempfile::TempDir {
    let dir = tiny_model_dir(&Tiny::default());
    write(
        dir.path(),
        "config_sentence_transformers.json",
        r#"{"prompts": {"query": "the quick ", "document": "a man "}, "default_prompt_name": null}"#,
    );
    dir
}

const TEXTS: &[&str] = &[
    "hello world",
    "the quick brown fox",
    "",
    "a man is eating food.",
    "東京",
];

fn stdin_lines() -> Vec<u8> {
    let mut s = TEXTS.join("\n");
    s.push('\n');
    s.into_bytes()
}

/// The vectors of JSON Lines output, checking each line's index.
fn json_vectors(out: &Output) -> Vec<Vec<f32>> {
    assert!(out.status.success(), "failed: {}", stderr(out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let v: Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["index"], i, "{line}");
            v["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

fn assert_equal(got: &[Vec<f32>], want: &[Vec<f32>], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: rows");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: row {i}'s dimension");
        let diff = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff <= 1e-6, "{what}: row {i} differs by {diff}");
    }
}

fn library(dir: &Path, options: &EmbedOptions) -> Vec<Vec<f32>> {
    let model = BertEmbedder::load(ModelSource::dir(dir)).unwrap();
    model.embed_with(TEXTS, options).unwrap()
}

#[test]
fn stdin_to_json_lines_gives_the_librarys_vectors_in_order() {
    let dir = model();
    let m = dir.path().to_str().unwrap();
    let got = json_vectors(&embed(&["--model", m], &stdin_lines()));
    assert_equal(&got, &library(dir.path(), &EmbedOptions::new()), "jsonl");
    // No final newline: the same texts.
    let mut unterminated = stdin_lines();
    unterminated.pop();
    let again = json_vectors(&embed(&["--model", m], &unterminated));
    assert_eq!(again, got);
}

#[test]
fn prompts_and_dimensions_are_the_librarys() {
    let dir = model();
    let m = dir.path().to_str().unwrap();
    let query = json_vectors(&embed(
        &["--model", m, "--prompt-name", "query"],
        &stdin_lines(),
    ));
    let model = BertEmbedder::load(ModelSource::dir(dir.path())).unwrap();
    // Bit for bit: the same tokens through the same pass.
    assert_eq!(query, model.embed_with_prompt("query", TEXTS).unwrap());
    assert_ne!(
        query,
        model.embed(TEXTS).unwrap(),
        "the prompt changes the vectors"
    );

    let short = json_vectors(&embed(&["--model", m, "--dimensions", "8"], &stdin_lines()));
    let want = library(dir.path(), &EmbedOptions::new().with_dimensions(8));
    assert_equal(&short, &want, "8 dimensions");
    for v in &short {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "normalised again: {norm}");
    }

    let out = embed(&["--model", m, "--prompt-name", "passage"], &stdin_lines());
    fails_with(&out, "the model's prompts are: document, query");
    let out = embed(&["--model", m, "--dimensions", "33"], &stdin_lines());
    fails_with(&out, &format!("the model's dimension ({TINY_HIDDEN})"));
    let out = embed(&["--model", m, "--dimensions", "0"], &stdin_lines());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--dimensions"), "{}", stderr(&out));
}

/// Reads an `.npy` file as the NPY 1.0 format defines it: magic, version,
/// header length, a dict literal, padding to a multiple of 64, the data.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let data_start = 10 + header_len;
    assert_eq!(data_start % 64, 0, "the data starts 64-byte aligned");
    let header = std::str::from_utf8(&bytes[10..data_start]).unwrap();
    assert!(header.ends_with('\n'), "{header:?}");
    assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': ("));
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[data_start..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(
        data.len(),
        shape.iter().product::<usize>(),
        "the data is the shape"
    );
    (shape, data)
}

#[test]
fn files_in_and_matrices_out() {
    let dir = model();
    let m = dir.path().to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("texts.txt");
    std::fs::write(&input, stdin_lines()).unwrap();
    let want = library(dir.path(), &EmbedOptions::new());

    let npy = work.path().join("v.npy");
    let out = embed(
        &[
            "--model",
            m,
            "--input",
            input.to_str().unwrap(),
            "--output",
            npy.to_str().unwrap(),
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let (shape, data) = read_npy(&npy);
    assert_eq!(shape, [TEXTS.len(), TINY_HIDDEN]);
    let rows: Vec<Vec<f32>> = data.chunks(TINY_HIDDEN).map(<[f32]>::to_vec).collect();
    assert_equal(&rows, &want, "npy");

    let st = work.path().join("v.safetensors");
    let out = embed(
        &[
            "--model",
            m,
            "--output",
            st.to_str().unwrap(),
            "--dimensions",
            "16",
        ],
        &stdin_lines(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&st).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = tensors.tensor("embeddings").unwrap();
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    assert_eq!(t.shape(), [TEXTS.len(), 16]);
    let rows: Vec<Vec<f32>> = t
        .data()
        .chunks(16 * 4)
        .map(|r| {
            r.chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        })
        .collect();
    assert_equal(
        &rows,
        &library(dir.path(), &EmbedOptions::new().with_dimensions(16)),
        "safetensors, 16 dimensions",
    );

    // JSON Lines in, a field of each object; blank lines skipped.
    let jsonl = work.path().join("docs.jsonl");
    let mut body = String::new();
    for (i, t) in TEXTS.iter().enumerate() {
        body.push_str(&serde_json::json!({"id": i, "body": t}).to_string());
        body.push_str("\n\n");
    }
    std::fs::write(&jsonl, body).unwrap();
    let out = embed(
        &[
            "--model",
            m,
            "--input",
            jsonl.to_str().unwrap(),
            "--field",
            "body",
            "--format",
            "jsonl",
        ],
        b"",
    );
    assert_equal(&json_vectors(&out), &want, "a JSONL field");
    let only = work.read_dir_names();
    assert_eq!(
        only,
        ["docs.jsonl", "texts.txt", "v.npy", "v.safetensors"],
        "no temporary files left"
    );
}

trait Names {
    fn read_dir_names(&self) -> Vec<String>;
}

impl Names for tempfile::TempDir {
    fn read_dir_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

#[test]
fn bad_input_is_one_line_and_leaves_nothing_behind() {
    let dir = model();
    let m = dir.path().to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let path = |name: &str| work.path().join(name).to_str().unwrap().to_string();

    fails_with(&embed(&["--model", m], b""), "stdin holds no texts");
    fails_with(
        &embed(&["--model", m], b"fine\n\xff\xfe\n"),
        "stdin line 2 is not valid UTF-8",
    );
    fails_with(
        &embed(
            &["--model", m, "--field", "text"],
            b"{\"text\": \"a\"}\n{\"body\": \"b\"}\n",
        ),
        "stdin line 2 has no field \"text\"",
    );
    let mut huge = vec![b'x'; (16 << 20) + 1];
    huge.push(b'\n');
    fails_with(
        &embed(&["--model", m], &huge),
        "stdin line 1 is longer than",
    );
    fails_with(
        &embed(&["--model", m, "--format", "npy"], b"a\n"),
        "--format npy needs --output FILE",
    );
    fails_with(
        &embed(
            &[
                "--model",
                m,
                "--format",
                "npy",
                "--output",
                &path("v.jsonl"),
            ],
            b"a\n",
        ),
        "contradicts the output's extension",
    );
    fails_with(
        &embed(&["--model", m, "--output", &path("missing/v.npy")], b"a\n"),
        "cannot write",
    );
    fails_with(
        &embed(
            &["--model", m, "--output", work.path().to_str().unwrap()],
            b"a\n",
        ),
        "is a directory",
    );
    fails_with(
        &embed(&["--model", m, "--input", &path("absent.txt")], b""),
        "--input",
    );
    // A failure part-way (a bad line after a first window of texts) leaves
    // no file under the name asked for.
    let mut input = "ok\n".repeat(3000).into_bytes();
    input.extend_from_slice(b"\xff\n");
    fails_with(
        &embed(&["--model", m, "--output", &path("v.npy")], &input),
        "stdin line 3001 is not valid UTF-8",
    );
    assert!(
        work.read_dir_names().is_empty(),
        "{:?}",
        work.read_dir_names()
    );
}

#[test]
fn help_lists_each_subcommand_in_a_line_and_embed_shows_examples() {
    let help = Command::new(env!("CARGO_BIN_EXE_membatch"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    let commands: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    let names: Vec<&str> = commands
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["embed", "codebase", "help"], "{text}");
    assert!(
        commands.iter().all(|l| l.split_whitespace().count() > 3),
        "{text}"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_membatch"))
        .args(["embed", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("Examples:\n  membatch embed < texts.txt"),
        "{text}"
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_run_quietly() {
    let dir = model();
    let mut child = Command::new(env!("CARGO_BIN_EXE_membatch"))
        .args(["embed", "--model", dir.path().to_str().unwrap()])
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // Far more output than a pipe holds.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all("hello world\n".repeat(5000).as_bytes());
    });
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.starts_with("{\"index\":0,"), "{first}");
    drop(stdout); // as `| head -1` does
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
}

#[test]
fn an_output_file_is_made_as_the_shell_would_and_json_is_refused() {
    let dir = model();
    let m = dir.path().to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("v.jsonl");
    assert!(
        embed(&["--model", m, "--output", out.to_str().unwrap()], b"a\n")
            .status
            .success()
    );
    let plain = work.path().join("plain");
    std::fs::write(&plain, b"").unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&out),
        mode(&plain),
        "the umask's mode, not a temporary file's 0600"
    );
    let json = work.path().join("v.json");
    fails_with(
        &embed(&["--model", m, "--output", json.to_str().unwrap()], b"a\n"),
        "name the file *.jsonl",
    );
}
