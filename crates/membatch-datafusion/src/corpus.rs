//! A directory of text files as a table: `read_text_files` (one row per
//! file) and `read_chunks` (one row per chunk of a file, cut to fit the
//! model in its own tokens), with the walk and ignore rules of
//! `membatch codebase` ([`membatch_corpus`]).
//!
//! Both stream: files are read while the query runs, a few MiB of text per
//! record batch, so a corpus larger than memory goes through.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{exec_datafusion_err, plan_err, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use membatch::TokenCounter;
use membatch_corpus::{read_text, relative, walk, Chunker, WalkOptions};

/// Files larger than this are skipped (with a warning) unless a call says
/// otherwise.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 10 << 20;
/// Text gathered into one record batch, at most (a larger file is a batch
/// of its own).
const BATCH_TEXT_BYTES: usize = 8 << 20;
/// Rows in one record batch, at most.
const BATCH_ROWS: usize = 1024;

/// What a call asked for: the directory, the glob, the size limit.
#[derive(Debug, Clone)]
struct Source {
    root: PathBuf,
    glob: Option<String>,
    max_file_bytes: u64,
}

/// `read_text_files('dir' [, 'glob' [, max_file_bytes]])`: one row per
/// text file under `dir` (`.gitignore` honoured, hidden files skipped;
/// binary, non-UTF-8 and larger files skipped with a warning), columns
/// `path` (relative to `dir`, `/`-separated) and `content`.
#[derive(Debug, Default)]
pub struct ReadTextFiles;

/// `read_chunks('dir' [, 'glob' [, chunk_tokens [, overlap]]])`: the files
/// of `read_text_files` cut into chunks that fit the model (its
/// `max_seq_length` by default, neighbours sharing 32 tokens), columns
/// `path`, `chunk_index` (from 0 within a file), `start_line`, `end_line`
/// (1-based) and `chunk`, so that
/// `SELECT path, chunk, embed(chunk) FROM read_chunks('src')` embeds a
/// whole tree.
#[derive(Debug)]
pub struct ReadChunks {
    counter: TokenCounter,
    max_seq_length: usize,
}

impl ReadChunks {
    /// Chunks counted in `counter`'s tokens for a model reading
    /// `max_seq_length` tokens (from the embedding model, e.g.
    /// `BertEmbedder::token_counter`).
    pub fn new(counter: TokenCounter, max_seq_length: usize) -> Self {
        ReadChunks {
            counter,
            max_seq_length,
        }
    }
}

fn text_files_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
    ]))
}

fn chunks_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("chunk_index", DataType::Int64, false),
        Field::new("start_line", DataType::Int64, false),
        Field::new("end_line", DataType::Int64, false),
        Field::new("chunk", DataType::Utf8, false),
    ]))
}

/// A literal string argument.
fn string_arg(function: &str, exprs: &[Expr], i: usize, what: &str) -> Result<Option<String>> {
    match exprs.get(i) {
        None => Ok(None),
        Some(Expr::Literal(v, _)) => match v.try_as_str() {
            Some(Some(s)) => Ok(Some(s.to_string())),
            Some(None) => Ok(None),
            None => plan_err!("{function}: {what} must be a string, not {}", v.data_type()),
        },
        Some(other) => plan_err!("{function}: {what} must be a literal, not {other}"),
    }
}

/// A literal whole-number argument of at least `min`.
fn count_arg(
    function: &str,
    exprs: &[Expr],
    i: usize,
    what: &str,
    min: u64,
) -> Result<Option<u64>> {
    let value = match exprs.get(i) {
        None | Some(Expr::Literal(ScalarValue::Null, _)) => return Ok(None),
        Some(Expr::Literal(v, _)) => v.clone(),
        Some(other) => return plan_err!("{function}: {what} must be a literal, not {other}"),
    };
    match value.cast_to(&DataType::UInt64) {
        Ok(ScalarValue::UInt64(Some(n))) if n >= min => Ok(Some(n)),
        _ => plan_err!("{function}: {what} must be a whole number of at least {min}, not {value}"),
    }
}

/// The directory and glob of a call, checked now so a typo fails at
/// planning rather than as an empty table.
fn source(function: &str, exprs: &[Expr], max_args: usize) -> Result<Source> {
    if exprs.is_empty() || exprs.len() > max_args {
        return plan_err!(
            "{function} takes a directory and at most {} more arguments",
            max_args - 1
        );
    }
    let Some(dir) = string_arg(function, exprs, 0, "the directory")? else {
        return plan_err!("{function}: the directory must not be null");
    };
    let root = Path::new(&dir);
    if !root.is_dir() {
        return plan_err!("{function}: {dir}: no such directory");
    }
    let root = root
        .canonicalize()
        .map_err(|e| exec_datafusion_err!("{function}: {dir}: {e}"))?;
    let glob = string_arg(function, exprs, 1, "the glob")?;
    if let Some(g) = &glob {
        // The same check the walk makes, on an empty directory's worth.
        ignore::overrides::OverrideBuilder::new(&root)
            .add(g)
            .and_then(|b| b.build())
            .map_err(|e| DataFusionError::Plan(format!("{function}: invalid glob {g:?}: {e}")))?;
    }
    Ok(Source {
        root,
        glob,
        max_file_bytes: DEFAULT_MAX_FILE_BYTES,
    })
}

impl ReadTextFiles {
    /// The table `read_text_files('dir')` reads, for registering a
    /// directory under a name of its own.
    ///
    /// # Errors
    ///
    /// A planning error when `dir` is not a directory.
    pub fn table(dir: &str) -> Result<Arc<dyn TableProvider>> {
        let exprs = [Expr::Literal(
            ScalarValue::Utf8(Some(dir.to_string())),
            None,
        )];
        let source = source("read_text_files", &exprs, 3)?;
        table(
            text_files_schema(),
            Files {
                source,
                chunker: None,
            },
        )
    }
}

impl TableFunctionImpl for ReadTextFiles {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let mut source = source("read_text_files", exprs, 3)?;
        if let Some(max) = count_arg("read_text_files", exprs, 2, "max_file_bytes", 1)? {
            source.max_file_bytes = max;
        }
        table(
            text_files_schema(),
            Files {
                source,
                chunker: None,
            },
        )
    }
}

impl TableFunctionImpl for ReadChunks {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let source = source("read_chunks", exprs, 4)?;
        let tokens = count_arg("read_chunks", exprs, 2, "chunk_tokens", 1)?;
        let overlap = count_arg("read_chunks", exprs, 3, "overlap", 0)?;
        let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let chunker = Chunker::new(
            self.counter.clone(),
            self.max_seq_length,
            tokens.map(as_usize),
            overlap.map(as_usize),
        )
        .map_err(|e| DataFusionError::Plan(format!("read_chunks: {e}")))?;
        table(
            chunks_schema(),
            Files {
                source,
                chunker: Some(Arc::new(chunker)),
            },
        )
    }
}

fn table(schema: SchemaRef, files: Files) -> Result<Arc<dyn TableProvider>> {
    let stream = Arc::new(FilesStream {
        schema: schema.clone(),
        files,
    });
    Ok(Arc::new(StreamingTable::try_new(schema, vec![stream])?))
}

/// The files of one call, read (and chunked) as the query pulls.
#[derive(Debug, Clone)]
struct Files {
    source: Source,
    chunker: Option<Arc<Chunker>>,
}

#[derive(Debug)]
struct FilesStream {
    schema: SchemaRef,
    files: Files,
}

impl PartitionStream for FilesStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches = Batches::new(self.schema.clone(), self.files.clone());
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::iter(batches),
        ))
    }
}

/// The record batches of a walk, built file by file.
struct Batches {
    schema: SchemaRef,
    files: Files,
    /// Found by the first pull (a walk of a big tree takes a while).
    paths: Option<std::vec::IntoIter<PathBuf>>,
    failed: bool,
}

impl Batches {
    fn new(schema: SchemaRef, files: Files) -> Self {
        Batches {
            schema,
            files,
            paths: None,
            failed: false,
        }
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        let source = &self.files.source;
        if self.paths.is_none() {
            let options = WalkOptions {
                exclude: None,
                glob: source.glob.clone(),
            };
            let (paths, skipped) = walk(&source.root, &options).map_err(DataFusionError::Plan)?;
            for s in skipped {
                tracing::warn!(path = %s.path, reason = %s.reason, "file skipped");
            }
            self.paths = Some(paths.into_iter());
        }
        let paths = self.paths.as_mut().expect("walked above");
        let mut rows = Rows::new(self.files.chunker.is_some());
        while rows.len < BATCH_ROWS && rows.bytes < BATCH_TEXT_BYTES {
            let Some(path) = paths.next() else { break };
            let rel = relative(&source.root, &path);
            let text = match read_text(&path, source.max_file_bytes) {
                Ok(t) => t,
                Err(reason) => {
                    tracing::warn!(path = %rel, %reason, "file skipped");
                    continue;
                }
            };
            match &self.files.chunker {
                None => rows.push(&rel, 0, 1, text.lines().count().max(1), &text),
                Some(chunker) => {
                    for (i, c) in chunker.chunks(&text).enumerate() {
                        rows.push(&rel, i, c.start_line, c.end_line, c.text);
                    }
                }
            }
        }
        if rows.len == 0 {
            return Ok(None);
        }
        Ok(Some(RecordBatch::try_new(
            self.schema.clone(),
            rows.finish(),
        )?))
    }
}

impl Iterator for Batches {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_batch();
        self.failed = next.is_err();
        next.transpose()
    }
}

/// Columns being built.
struct Rows {
    chunks: bool,
    path: StringBuilder,
    index: Int64Builder,
    start: Int64Builder,
    end: Int64Builder,
    text: StringBuilder,
    len: usize,
    bytes: usize,
}

impl Rows {
    fn new(chunks: bool) -> Self {
        Rows {
            chunks,
            path: StringBuilder::new(),
            index: Int64Builder::new(),
            start: Int64Builder::new(),
            end: Int64Builder::new(),
            text: StringBuilder::new(),
            len: 0,
            bytes: 0,
        }
    }

    fn push(&mut self, path: &str, index: usize, start: usize, end: usize, text: &str) {
        self.path.append_value(path);
        self.index.append_value(index as i64);
        self.start.append_value(start as i64);
        self.end.append_value(end as i64);
        self.text.append_value(text);
        self.len += 1;
        self.bytes += text.len();
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        if self.chunks {
            vec![
                Arc::new(self.path.finish()),
                Arc::new(self.index.finish()),
                Arc::new(self.start.finish()),
                Arc::new(self.end.finish()),
                Arc::new(self.text.finish()),
            ]
        } else {
            vec![Arc::new(self.path.finish()), Arc::new(self.text.finish())]
        }
    }
}
