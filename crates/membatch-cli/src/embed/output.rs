//! Where vectors go: JSON Lines to stdout or a file, or a float32 matrix
//! (`.npy`, `.safetensors`) in a file. Rows are written as they come, so
//! memory stays flat in the number of texts; a matrix's header, which
//! holds the row count, is written again at the end. A file is written
//! under a temporary name beside its path and renamed into place only when
//! complete: a failed or interrupted run leaves no partial file under the
//! name asked for.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use membatch_bin::{fail, Failure};
use tempfile::NamedTempFile;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// One `{"index": N, "embedding": [...]}` object per line.
    Jsonl,
    /// A NumPy float32 array of shape (texts, dimension).
    Npy,
    /// A safetensors file with one F32 tensor `embeddings` of shape
    /// [texts, dimension].
    Safetensors,
}

impl Format {
    /// The format a file name's extension says, if it says one.
    fn of_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            "npy" => Some(Format::Npy),
            "safetensors" => Some(Format::Safetensors),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::Npy => "npy",
            Format::Safetensors => "safetensors",
        }
    }

    /// The format to write: the one asked for, else the output's extension's,
    /// else JSON Lines.
    ///
    /// # Errors
    ///
    /// A matrix format to stdout (its header is written last, which a pipe
    /// cannot take back), or a format the output's extension contradicts.
    pub(super) fn choose(asked: Option<Format>, output: Option<&Path>) -> Result<Format, Failure> {
        if let Some(path) = output.filter(|p| p.extension().is_some_and(|e| e == "json")) {
            return Err(fail(format!(
                "--output {}: membatch embed writes JSON Lines (one object per line), not one \
                 JSON document: name the file *.jsonl",
                path.display()
            )));
        }
        let by_name = output.and_then(Format::of_path);
        let format = match (asked, by_name) {
            (Some(a), Some(n)) if a != n => {
                return Err(fail(format!(
                    "--format {} contradicts the output's extension ({}): name the file \
                     *.{} or drop --format",
                    a.name(),
                    output.map_or_else(String::new, |p| p.display().to_string()),
                    a.name()
                )))
            }
            (Some(a), _) => a,
            (None, Some(n)) => n,
            (None, None) => Format::Jsonl,
        };
        if output.is_none() && format != Format::Jsonl {
            return Err(fail(format!(
                "--format {} needs --output FILE: its header, which counts the rows, is written \
                 last, which stdout cannot take back (stdout gets jsonl)",
                format.name()
            )));
        }
        Ok(format)
    }
}

/// Rows written as they come, in one of the formats.
pub(super) struct Sink {
    out: BufWriter<Box<dyn WriteSeek>>,
    /// The temporary file and the path it becomes, for a file.
    file: Option<(NamedTempFile, PathBuf)>,
    format: Format,
    dimension: usize,
    rows: u64,
    /// The bytes reserved for a matrix's header.
    header_len: usize,
    /// What a safetensors header records besides the tensor.
    metadata: Vec<(String, String)>,
    /// Whether stdout's reader went away (`membatch embed | head`).
    closed: bool,
}

/// A writer that can seek (stdout cannot, and is only given JSON Lines).
trait WriteSeek: Write + Send {
    fn seek_start(&mut self) -> std::io::Result<()>;
}

impl WriteSeek for File {
    fn seek_start(&mut self) -> std::io::Result<()> {
        self.seek(SeekFrom::Start(0)).map(drop)
    }
}

impl WriteSeek for std::io::Stdout {
    fn seek_start(&mut self) -> std::io::Result<()> {
        Err(std::io::Error::other("stdout cannot seek"))
    }
}

impl Sink {
    /// A sink writing `format` to `output` (a temporary file beside it until
    /// [`finish`](Self::finish)) or to stdout. Opened before the model
    /// loads, so an output that cannot be written fails at once.
    pub(super) fn create(output: Option<&Path>, format: Format) -> Result<Self, Failure> {
        let (writer, file): (Box<dyn WriteSeek>, _) = match output {
            None => (Box::new(std::io::stdout()), None),
            Some(path) => {
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                if path.is_dir() {
                    return Err(fail(format!("--output {}: is a directory", path.display())));
                }
                let mut builder = tempfile::Builder::new();
                builder.prefix(".membatch-embed-").suffix(".partial");
                // As a file created by `>` would be (the umask applies), not
                // the private mode of a temporary file.
                #[cfg(unix)]
                builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
                let tmp = builder
                    .tempfile_in(dir)
                    .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
                let handle = tmp
                    .reopen()
                    .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
                (Box::new(handle), Some((tmp, path.to_path_buf())))
            }
        };
        Ok(Sink {
            out: BufWriter::with_capacity(1 << 20, writer),
            file,
            format,
            dimension: 0,
            rows: 0,
            header_len: 0,
            metadata: Vec::new(),
            closed: false,
        })
    }

    /// Starts the rows, of `dimension` floats each: reserves a matrix's
    /// header (a safetensors one records `metadata`), for the most rows there
    /// could be (the real one, written at the end, is no longer, and is
    /// padded to the same length).
    pub(super) fn begin(
        &mut self,
        dimension: usize,
        metadata: Vec<(String, String)>,
    ) -> Result<(), Failure> {
        self.dimension = dimension;
        self.metadata = metadata;
        let widest = self.header(u64::MAX / (4 * dimension.max(1) as u64), 0);
        self.header_len = widest.len();
        let reserved = vec![b' '; self.header_len];
        self.out
            .write_all(&reserved)
            .map_err(|e| self.write_error(e))
    }

    /// Appends vectors, each of the sink's dimension, numbered on from the
    /// rows written so far.
    pub(super) fn push(&mut self, vectors: &[Vec<f32>]) -> Result<(), Failure> {
        for v in vectors {
            if v.len() != self.dimension {
                return Err(fail(format!(
                    "a vector has {} values, the model's dimension is {}",
                    v.len(),
                    self.dimension
                )));
            }
            let written = match self.format {
                Format::Jsonl => write_json_line(&mut self.out, self.rows, v),
                Format::Npy | Format::Safetensors => v
                    .iter()
                    .try_for_each(|x| self.out.write_all(&x.to_le_bytes())),
            };
            if let Err(e) = written {
                if self.file.is_none() && e.kind() == std::io::ErrorKind::BrokenPipe {
                    self.closed = true;
                    return Ok(());
                }
                return Err(self.write_error(e));
            }
            self.rows += 1;
        }
        Ok(())
    }

    /// Whether stdout's reader went away: nothing more can be written, and
    /// nothing is wrong (`membatch embed | head`).
    pub(super) fn closed(&self) -> bool {
        self.closed
    }

    /// The rows written.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the real header over the reserved one, syncs, and renames the
    /// file into place.
    pub(super) fn finish(mut self) -> Result<(), Failure> {
        if let Err(e) = self.out.flush() {
            if self.file.is_none() && e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(self.write_error(e));
        }
        if self.header_len > 0 {
            let header = self.header(self.rows, self.header_len);
            if header.len() != self.header_len {
                return Err(fail(
                    "the output's header outgrew its room (a bug in membatch)",
                ));
            }
            let out = self.out.get_mut();
            let written = out
                .seek_start()
                .and_then(|()| out.write_all(&header))
                .and_then(|()| out.flush());
            written.map_err(|e| self.write_error(e))?;
        }
        if let Some((tmp, path)) = self.file.take() {
            tmp.as_file()
                .sync_all()
                .map_err(|e| fail(format!("cannot write {}: {e}", path.display())))?;
            tmp.persist(&path)
                .map_err(|e| fail(format!("cannot write {}: {}", path.display(), e.error)))?;
        }
        Ok(())
    }

    /// The header of a matrix of `rows` rows (empty for JSON Lines),
    /// complete and padded as its format wants, to at least `min_len`
    /// bytes (the room reserved for it).
    fn header(&self, rows: u64, min_len: usize) -> Vec<u8> {
        let d = self.dimension as u64;
        match self.format {
            Format::Jsonl => Vec::new(),
            Format::Npy => {
                // NPY 1.0: magic, version, the dict's length (u16 LE), the
                // dict padded with spaces and a newline to a multiple of 64.
                let dict =
                    format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {d}), }}");
                let len = (10 + dict.len() + 1).max(min_len).div_ceil(64) * 64;
                let mut h = b"\x93NUMPY\x01\x00".to_vec();
                h.extend_from_slice(&((len - 10) as u16).to_le_bytes());
                h.extend_from_slice(dict.as_bytes());
                h.resize(len - 1, b' ');
                h.push(b'\n');
                h
            }
            Format::Safetensors => {
                let metadata: Vec<(&str, &str)> = self
                    .metadata
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                crate::matrix::safetensors_header("embeddings", rows, d, &metadata, min_len)
            }
        }
    }

    /// An error writing the output, naming it.
    fn write_error(&self, e: std::io::Error) -> Failure {
        match &self.file {
            Some((_, path)) => fail(format!("cannot write {}: {e}", path.display())),
            None => fail(format!("cannot write to stdout: {e}")),
        }
    }
}

fn write_json_line(out: &mut impl Write, index: u64, v: &[f32]) -> std::io::Result<()> {
    #[derive(serde::Serialize)]
    struct Line<'a> {
        index: u64,
        embedding: &'a [f32],
    }
    serde_json::to_writer(
        &mut *out,
        &Line {
            index,
            embedding: v,
        },
    )?;
    out.write_all(b"\n")
}
