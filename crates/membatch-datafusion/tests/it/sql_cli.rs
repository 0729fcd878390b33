//! The binaries as a user runs them, with a tiny random model: membatch-sql
//! on a single node and against a loopback Ballista cluster of
//! membatch-scheduler and membatch-executor, and its one-line errors.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use membatch_testkit::tiny::{tiny_model_dir, Tiny};

fn bin(name: &str) -> Command {
    let path = match name {
        "membatch-sql" => env!("CARGO_BIN_EXE_membatch-sql"),
        "membatch-executor" => env!("CARGO_BIN_EXE_membatch-executor"),
        "membatch-scheduler" => env!("CARGO_BIN_EXE_membatch-scheduler"),
        other => panic!("no binary {other}"),
    };
    let mut c = Command::new(path);
    c.env("MEMBATCH_MAX_MEMORY", "1GiB")
        .env_remove("MEMBATCH_MODEL")
        .env_remove("RUST_LOG");
    c
}

fn sql(model: &Path, args: &[&str]) -> Output {
    bin("membatch-sql")
        .arg("--model")
        .arg(format!("tiny={}", model.display()))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_csv(path: &Path, n: usize) {
    let words = [
        "hello",
        "world",
        "the quick brown fox",
        "lazy dog",
        "eating food",
    ];
    let mut body = String::from("id,text\n");
    for i in 0..n {
        body.push_str(&format!("{i},{} {}\n", words[i % 5], words[(i / 5) % 5]));
    }
    std::fs::write(path, body).unwrap();
}

/// `id,sum(v)` rows of a parquet output, printed by membatch-sql itself.
fn sums(model: &Path, dir: &Path) -> String {
    let o = sql(
        model,
        &[
            "--table",
            &format!("out={}", dir.display()),
            "-e",
            "SELECT id, round(array_sum(v), 4) AS s FROM out ORDER BY id",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o)
}

#[test]
fn copy_to_parquet_and_a_directory_of_text_files() {
    let model = tiny_model_dir(&Tiny::default());
    let work = tempfile::tempdir().unwrap();
    let csv = work.path().join("docs.csv");
    write_csv(&csv, 50);
    let out = work.path().join("out");
    let o = sql(
        model.path(),
        &[
            "--table",
            &format!("docs={}", csv.display()),
            "--stats",
            "-e",
            &format!(
                "COPY (SELECT id, embed(text) AS v FROM docs) TO '{}/' STORED AS PARQUET",
                out.display()
            ),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("50"), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(err.contains("embedded 50 texts"), "{err}");
    assert!(
        err.contains("membatch::embed") && err.contains("membatch::weights(tiny)"),
        "{err}"
    );
    let single = sums(model.path(), &out);
    assert_eq!(single.matches('|').count() / 3, 50 + 1, "{single}");

    // A directory of text files is a table of (path, content).
    let texts = work.path().join("texts");
    std::fs::create_dir(&texts).unwrap();
    std::fs::write(texts.join("a.txt"), "hello world").unwrap();
    std::fs::write(texts.join("b.md"), "lazy dog").unwrap();
    let o = sql(
        model.path(),
        &[
            "--table",
            &format!("t={}", texts.display()),
            "-e",
            "SELECT path, array_length(embed(content)) AS n FROM t ORDER BY path",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("a.txt") && out.contains("b.md") && out.contains("32"),
        "{out}"
    );

    // Statements from standard input, several at once, as written: a
    // quoted COPY target and a semicolon inside a string survive.
    let piped = work.path().join("piped");
    let script = format!(
        "SELECT 1 + 1 AS two; -- a comment; with a semicolon\n\
         SELECT array_length(embed('hello; world')) AS n;\n\
         COPY (SELECT 'a;b' AS s) TO '{}/' STORED AS PARQUET;",
        piped.display()
    );
    let mut child = bin("membatch-sql")
        .arg("--model")
        .arg(format!("tiny={}", model.path().display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), script.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("two") && out.contains("| 32 |"), "{out}");
    assert!(piped.is_dir(), "COPY wrote to the quoted directory: {out}");
}

#[test]
fn errors_are_one_line() {
    let model = tiny_model_dir(&Tiny::default());
    let work = tempfile::tempdir().unwrap();
    let texts = work.path().join("texts");
    std::fs::create_dir(&texts).unwrap();
    std::fs::write(texts.join("a.txt"), "hello").unwrap();
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec![
                "--ballista".into(),
                "nowhere".into(),
                "-e".into(),
                "SELECT 1".into(),
            ],
            1,
            "expected standalone or df://",
        ),
        (
            vec![
                "--table".into(),
                "x=/no/such.csv".into(),
                "-e".into(),
                "SELECT 1".into(),
            ],
            1,
            "no such file",
        ),
        (
            vec!["--table".into(), "broken".into()],
            2,
            "expected NAME=PATH",
        ),
        (vec!["-e".into(), "SELEC nonsense".into()], 1, "SELEC"),
        (
            vec!["-e".into(), "SELECT embed(1, 2, 3)".into()],
            1,
            "embed",
        ),
        (
            vec![
                "--memory-limit".into(),
                "lots".into(),
                "-e".into(),
                "SELECT 1".into(),
            ],
            2,
            "--memory-budget",
        ),
        (
            vec![
                "--ballista".into(),
                "standalone".into(),
                "--table".into(),
                format!("t={}", texts.display()),
                "-e".into(),
                "SELECT 1".into(),
            ],
            1,
            "write it to parquet first",
        ),
    ];
    for (args, code, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = sql(model.path(), &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.starts_with("membatch-sql: "), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when the test ends, pass or fail.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    let until = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < until, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_loopback_cluster_gives_the_single_node_vectors() {
    let model = tiny_model_dir(&Tiny::default());
    let spec = format!("tiny={}", model.path().display());
    let work = tempfile::tempdir().unwrap();
    let csv = work.path().join("docs.csv");
    write_csv(&csv, 200);
    let parquet = work.path().join("docs.parquet");
    let o = sql(
        model.path(),
        &[
            "--table",
            &format!("docs={}", csv.display()),
            "-e",
            &format!("COPY docs TO '{}' STORED AS PARQUET", parquet.display()),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let scheduler_port = free_port();
    let _scheduler = Running(
        bin("membatch-scheduler")
            .args(["--port", &scheduler_port.to_string(), "--model", &spec])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(scheduler_port);
    let executors: Vec<Running> = (0..2)
        .map(|_| {
            Running(
                bin("membatch-executor")
                    .args([
                        "--scheduler",
                        &format!("127.0.0.1:{scheduler_port}"),
                        "--port",
                        &free_port().to_string(),
                        "--grpc-port",
                        &free_port().to_string(),
                        "--threads",
                        "1",
                        "--task-slots",
                        "1",
                        "--model",
                        &spec,
                        "--work-dir",
                        work.path().to_str().unwrap(),
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    // Executors register with the scheduler on start.
    std::thread::sleep(Duration::from_secs(3));

    let copy = |out: &Path| {
        format!(
            "COPY (SELECT id, embed(text) AS v FROM docs) TO '{}/' STORED AS PARQUET",
            out.display()
        )
    };
    let cluster_out = work.path().join("cluster");
    let o = sql(
        model.path(),
        &[
            "--ballista",
            &format!("df://127.0.0.1:{scheduler_port}"),
            "--partitions",
            "2",
            "--table",
            &format!("docs={}", parquet.display()),
            "-e",
            &copy(&cluster_out),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    drop(executors);

    let single_out = work.path().join("single");
    let o = sql(
        model.path(),
        &[
            "--table",
            &format!("docs={}", parquet.display()),
            "-e",
            &copy(&single_out),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        sums(model.path(), &cluster_out),
        sums(model.path(), &single_out)
    );
}
