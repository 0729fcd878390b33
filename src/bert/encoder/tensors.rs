//! Where the packed encoder reads its tensors: `model.safetensors`, read
//! tensor by tensor (or rows at a time) with positioned reads straight into
//! the encoder's own buffers, or any candle `VarBuilder` (the random models
//! of the unit tests).
//!
//! Why not candle's memory-mapped loader here: every page of a mapped file
//! that a copy touches counts in the process's resident memory until the
//! map goes, and the copy goes through a candle tensor first, so loading
//! all-MiniLM-L6-v2 peaked at the weights plus the mapped file plus a
//! second copy of the word table (163 MiB for 87 MiB of weights). Reading
//! into the final buffers keeps the peak at what stays. The `safetensors`
//! crate validates a header only against the whole file held in memory,
//! so the header is parsed here (a JSON object of dtype, shape and data
//! offsets per tensor), and every offset is checked against the file.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use candle_core::Result as CandleResult;
use candle_nn::VarBuilder;

/// A source of named tensors, read as `f32` rows.
pub(crate) trait TensorRead {
    /// Whether the source holds `name`.
    fn contains(&self, name: &str) -> bool;

    /// Rows `rows` of tensor `name`, checked to have `shape` (`[len]` is one
    /// row), converted to `f32` into `out` (`rows.len() × row width`).
    fn read_rows(
        &self,
        name: &str,
        shape: &[usize],
        rows: Range<usize>,
        out: &mut [f32],
    ) -> CandleResult<()>;

    /// A reader of tensor `name`'s rows that outlives this source, for
    /// tables read a row at a time while the model runs; `None` where the
    /// source cannot give one (its tensors are then read whole).
    fn row_source(&self, _name: &str, _shape: &[usize]) -> Option<RowSource> {
        None
    }
}

/// One tensor of a `model.safetensors` file, its rows read when asked for
/// through a handle of the file's own.
#[derive(Debug)]
pub(crate) struct RowSource {
    file: SafetensorsFile,
    name: String,
    shape: Vec<usize>,
}

impl RowSource {
    /// Rows `rows` of the tensor, as `f32`, into `out`.
    pub(crate) fn read(&self, rows: Range<usize>, out: &mut [f32]) -> CandleResult<()> {
        self.file.read_rows(&self.name, &self.shape, rows, out)
    }
}

impl TensorRead for VarBuilder<'_> {
    fn contains(&self, name: &str) -> bool {
        self.contains_tensor(name)
    }

    fn read_rows(
        &self,
        name: &str,
        shape: &[usize],
        rows: Range<usize>,
        out: &mut [f32],
    ) -> CandleResult<()> {
        let t = self.get(shape.to_vec(), name)?;
        let t = if shape.len() > 1 {
            t.narrow(0, rows.start, rows.len())?
        } else {
            t
        };
        let values: Vec<f32> = t.flatten_all()?.to_vec1()?;
        if values.len() != out.len() {
            candle_core::bail!("{name}: {} values for {} places", values.len(), out.len());
        }
        out.copy_from_slice(&values);
        Ok(())
    }
}

/// A prefix within a tensor source (`vb.pp(...)` for [`TensorRead`]).
#[derive(Clone)]
pub(crate) struct Tensors<'a> {
    source: &'a dyn TensorRead,
    prefix: String,
}

impl<'a> Tensors<'a> {
    pub(crate) fn new(source: &'a dyn TensorRead) -> Self {
        Tensors {
            source,
            prefix: String::new(),
        }
    }

    /// The tensors under `part.` within this prefix.
    pub(crate) fn pp(&self, part: impl AsRef<str>) -> Self {
        Tensors {
            source: self.source,
            prefix: self.name(part.as_ref()),
        }
    }

    fn name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    pub(crate) fn contains_tensor(&self, name: &str) -> bool {
        self.source.contains(&self.name(name))
    }

    /// A 1-D tensor of `len` values.
    pub(crate) fn vector(&self, name: &str, len: usize) -> CandleResult<Vec<f32>> {
        let mut out = vec![0f32; len];
        self.source
            .read_rows(&self.name(name), &[len], 0..1, &mut out)?;
        Ok(out)
    }

    /// A `rows × cols` tensor, row-major.
    pub(crate) fn matrix(&self, name: &str, rows: usize, cols: usize) -> CandleResult<Vec<f32>> {
        let mut out = Vec::with_capacity(rows * cols);
        // Written at once, so the pages are the process's from here on.
        out.resize(rows * cols, 0.0);
        self.read_rows(name, (rows, cols), 0..rows, &mut out)?;
        Ok(out)
    }

    /// A reader of a `rows × cols` tensor's rows that outlives this source
    /// (see [`TensorRead::row_source`]).
    pub(crate) fn row_source(&self, name: &str, (rows, cols): (usize, usize)) -> Option<RowSource> {
        self.source.row_source(&self.name(name), &[rows, cols])
    }

    /// Rows `range` of a `rows × cols` tensor into `out`.
    pub(crate) fn read_rows(
        &self,
        name: &str,
        (rows, cols): (usize, usize),
        range: Range<usize>,
        out: &mut [f32],
    ) -> CandleResult<()> {
        self.source
            .read_rows(&self.name(name), &[rows, cols], range, out)
    }
}

/// The element types a safetensors file may hold that membatch converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// The dtype's name, for one membatch does not read (an error when
    /// the tensor is asked for).
    dtype: Result<Dtype, String>,
    shape: Vec<usize>,
    /// Absolute offset of the first byte in the file.
    start: u64,
}

/// `model.safetensors` read piecewise through positioned reads.
#[derive(Debug)]
pub(crate) struct SafetensorsFile {
    /// Read only with positioned reads ([`read_at`]): no shared position,
    /// so concurrent readers need no lock.
    file: File,
    entries: HashMap<String, Entry>,
}

/// Headers larger than this are refused (the format's own limit).
const MAX_HEADER: u64 = 100_000_000;

impl SafetensorsFile {
    /// Opens `path` and reads its header; every tensor's extent is checked
    /// against its shape, its dtype and the file's length.
    pub(crate) fn open(path: &Path) -> CandleResult<Self> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let mut size = [0u8; 8];
        file.read_exact(&mut size).map_err(|_| {
            candle_core::Error::Msg("the file is shorter than a safetensors header".into())
        })?;
        let n = u64::from_le_bytes(size);
        if n > MAX_HEADER || 8 + n > len {
            candle_core::bail!("the header length {n} does not fit the file ({len} bytes)");
        }
        let mut header = vec![0u8; n as usize];
        file.read_exact(&mut header)?;
        #[derive(serde::Deserialize)]
        struct Info {
            dtype: String,
            shape: Vec<usize>,
            data_offsets: (u64, u64),
        }
        let raw: HashMap<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| candle_core::Error::Msg(format!("the header is not valid JSON: {e}")))?;
        let data = 8 + n;
        let mut entries = HashMap::with_capacity(raw.len());
        for (name, value) in raw {
            if name == "__metadata__" {
                continue;
            }
            let info: Info = serde_json::from_value(value)
                .map_err(|e| candle_core::Error::Msg(format!("tensor {name}: {e}")))?;
            let dtype = match info.dtype.as_str() {
                "F32" => Ok(Dtype::F32),
                "F16" => Ok(Dtype::F16),
                "BF16" => Ok(Dtype::Bf16),
                other => Err(other.to_string()),
            };
            let (begin, end) = info.data_offsets;
            let elements = info
                .shape
                .iter()
                .try_fold(1u64, |n, d| n.checked_mul(*d as u64));
            let fits = end >= begin && data.checked_add(end).is_some_and(|e| e <= len);
            let sized = match (&dtype, elements) {
                (Ok(d), Some(e)) => {
                    match (e.checked_mul(d.size() as u64), end.checked_sub(begin)) {
                        (Some(bytes), Some(held)) => bytes == held,
                        _ => false,
                    }
                }
                (Err(_), Some(_)) => true,
                (_, None) => false,
            };
            if !fits || !sized {
                candle_core::bail!(
                    "tensor {name}: bytes {begin}..{end} do not hold its {} {:?} values within the file's {len} bytes",
                    info.dtype,
                    info.shape
                );
            }
            entries.insert(
                name,
                Entry {
                    dtype,
                    shape: info.shape,
                    start: data + begin,
                },
            );
        }
        Ok(SafetensorsFile { file, entries })
    }
}

impl TensorRead for SafetensorsFile {
    fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn row_source(&self, name: &str, shape: &[usize]) -> Option<RowSource> {
        let entry = self.entries.get(name)?;
        if entry.shape != shape || entry.dtype.is_err() {
            return None;
        }
        let file = self.file.try_clone().ok()?;
        // Rows are read scattered, a row at a time: without readahead each
        // read caches its own page only. (The advice belongs to the open
        // file, which the loader's handle shares; it reads nothing more.)
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: posix_fadvise only reads the descriptor, open for the
            // call; offset 0 and length 0 mean the whole file. Advice that
            // fails changes nothing but the cache's size.
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
        }
        Some(RowSource {
            file: SafetensorsFile {
                file,
                entries: HashMap::from([(name.to_string(), entry.clone())]),
            },
            name: name.to_string(),
            shape: shape.to_vec(),
        })
    }

    fn read_rows(
        &self,
        name: &str,
        shape: &[usize],
        rows: Range<usize>,
        out: &mut [f32],
    ) -> CandleResult<()> {
        let Some(entry) = self.entries.get(name) else {
            candle_core::bail!("cannot find tensor {name}");
        };
        if entry.shape != shape {
            candle_core::bail!(
                "shape mismatch for {name}, expected {shape:?}, got {:?}",
                entry.shape
            );
        }
        let dtype = entry.dtype.clone().map_err(|d| {
            candle_core::Error::Msg(format!(
                "tensor {name} is {d}: membatch reads F32, F16 and BF16"
            ))
        })?;
        // A 1-D tensor is one row.
        let (total_rows, width) = match shape {
            [len] => (1, *len),
            [rows, rest @ ..] => (*rows, rest.iter().product()),
            [] => (1, 1),
        };
        if rows.end > total_rows || out.len() != rows.len() * width {
            candle_core::bail!(
                "{name}: rows {rows:?} × {width} do not fit {shape:?} or the buffer"
            );
        }
        let mut offset = entry.start + (rows.start * width * dtype.size()) as u64;
        let file = &self.file;
        match dtype {
            Dtype::F32 => {
                // SAFETY: every bit pattern is a valid f32, and the byte
                // view covers exactly `out`'s memory.
                let bytes = unsafe {
                    std::slice::from_raw_parts_mut(out.as_mut_ptr().cast::<u8>(), 4 * out.len())
                };
                read_at(file, bytes, offset)?;
                if cfg!(target_endian = "big") {
                    for v in out.iter_mut() {
                        *v = f32::from_bits(u32::from_le(v.to_bits()));
                    }
                }
            }
            Dtype::F16 | Dtype::Bf16 if out.is_empty() => {}
            Dtype::F16 | Dtype::Bf16 => {
                // Half-width values, a chunk at a time.
                let mut chunk = vec![0u8; 2 * out.len().min(1 << 18)];
                for out in out.chunks_mut(chunk.len() / 2) {
                    let bytes = &mut chunk[..2 * out.len()];
                    read_at(file, bytes, offset)?;
                    offset += bytes.len() as u64;
                    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                        let bits = u16::from_le_bytes([b[0], b[1]]);
                        *o = match dtype {
                            Dtype::F16 => half::f16::from_bits(bits).to_f32(),
                            _ => half::bf16::from_bits(bits).to_f32(),
                        };
                    }
                }
            }
        }
        Ok(())
    }
}

/// Reads `buf.len()` bytes at `offset` without the file's shared position
/// (a [`RowSource`]'s handle is a duplicate of the loader's, and
/// duplicates share one position).
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let (mut buf, mut offset) = (buf, offset);
        while !buf.is_empty() {
            match file.seek_read(buf, offset) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    buf = &mut buf[n..];
                    offset += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    #[cfg(not(any(unix, windows)))]
    {
        // No positioned reads: one reader at a time moves the position.
        use std::io::{Seek, SeekFrom};
        static POSITION: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
        let _one_reader = POSITION.lock();
        let mut file = file;
        file.seek(SeekFrom::Start(offset))?;
        file.read_exact(buf)
    }
}

#[cfg(test)]
pub(crate) use tests::{file as test_file, le};

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of the given tensors (name, dtype, shape, bytes).
    pub(crate) fn file(tensors: &[(&str, &str, Vec<usize>, Vec<u8>)]) -> tempfile::NamedTempFile {
        let mut header = serde_json::Map::new();
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in tensors {
            header.insert(
                name.to_string(),
                serde_json::json!({"dtype": dtype, "shape": shape,
                    "data_offsets": [data.len(), data.len() + bytes.len()]}),
            );
            data.extend_from_slice(bytes);
        }
        header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let header = serde_json::to_vec(&header).unwrap();
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header);
        bytes.extend(data);
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), bytes).unwrap();
        f
    }

    pub(crate) fn le(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn rows_of_each_dtype_read_as_f32() {
        let m: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let f16: Vec<u8> = m
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = m
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect();
        let f = file(&[
            ("a.weight", "F32", vec![4, 3], le(&m)),
            ("b", "F16", vec![4, 3], f16),
            ("c", "BF16", vec![12], bf16),
        ]);
        let st = SafetensorsFile::open(f.path()).unwrap();
        let t = Tensors::new(&st);
        assert!(t.pp("a").contains_tensor("weight") && !t.contains_tensor("weight"));
        assert_eq!(t.pp("a").matrix("weight", 4, 3).unwrap(), m);
        let mut rows = vec![0f32; 6];
        t.read_rows("b", (4, 3), 1..3, &mut rows).unwrap();
        assert_eq!(rows, m[3..9]);
        assert_eq!(t.vector("c", 12).unwrap(), m);
    }

    #[test]
    fn wrong_shapes_dtypes_and_extents_are_errors() {
        let f = file(&[
            ("a", "F32", vec![2, 2], le(&[1.0, 2.0, 3.0, 4.0])),
            ("i", "I64", vec![1], vec![0; 8]),
        ]);
        let st = SafetensorsFile::open(f.path()).unwrap();
        let t = Tensors::new(&st);
        let err = t.matrix("a", 4, 1).unwrap_err().to_string();
        assert!(err.contains("shape mismatch"), "{err}");
        let err = t.vector("i", 1).unwrap_err().to_string();
        assert!(err.contains("I64"), "{err}");
        let err = t.vector("missing", 1).unwrap_err().to_string();
        assert!(err.contains("cannot find tensor missing"), "{err}");

        // Offsets past the end, a size that disagrees with the shape, a
        // header longer than the file, and no header at all.
        let f = file(&[("a", "F32", vec![2, 2], le(&[1.0, 2.0, 3.0, 4.0]))]);
        let bytes = std::fs::read(f.path()).unwrap();
        std::fs::write(f.path(), &bytes[..bytes.len() - 1]).unwrap();
        assert!(SafetensorsFile::open(f.path()).is_err());
        let f = file(&[("a", "F32", vec![3], le(&[1.0, 2.0, 3.0, 4.0]))]);
        assert!(SafetensorsFile::open(f.path()).is_err());
        // Offsets the wrong way round: an error, not an underflow.
        let mut bytes = std::fs::read(f.path()).unwrap();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
        let swapped = header.replace("[0,16]", "[16,0]");
        assert_ne!(header, swapped, "{header}");
        let mut patched = (swapped.len() as u64).to_le_bytes().to_vec();
        patched.extend(swapped.as_bytes());
        patched.extend(bytes.split_off(8 + header_len));
        std::fs::write(f.path(), &patched).unwrap();
        let err = SafetensorsFile::open(f.path()).unwrap_err().to_string();
        assert!(err.contains("do not hold"), "{err}");
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend(b"{}");
        std::fs::write(f.path(), &bytes).unwrap();
        assert!(SafetensorsFile::open(f.path()).is_err());
        std::fs::write(f.path(), b"abc").unwrap();
        assert!(SafetensorsFile::open(f.path()).is_err());
    }
}
