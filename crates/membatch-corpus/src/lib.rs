//! A corpus on disk, as `membatch codebase` (the CLI) and
//! `membatch-datafusion`'s `read_text_files` / `read_chunks` see it: a
//! `.gitignore`-aware walk of a directory ([`walk`]), each file read as
//! UTF-8 text or skipped with a reason ([`read_text`]), and texts cut into
//! chunks that fit the model in its own tokens ([`Chunker`]).
//!
//! A crate of its own so that the CLI and the DataFusion crate share it
//! without one depending on the other (and on the other's storage: redb,
//! blake3, a progress bar).

#![warn(missing_docs)]

mod chunk;
mod walk;

pub use chunk::{Chunk, ChunkSettingsError, Chunker};
pub use walk::{read_text, relative, walk, Skipped, Unreadable, WalkOptions};
