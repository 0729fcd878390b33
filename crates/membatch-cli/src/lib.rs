//! The reusable part of membatch's command-line tools: a corpus on disk
//! ([`corpus`]: the `.gitignore`-aware walk, reading files as text, and
//! token-aware chunking), shared by `membatch codebase` and by
//! `membatch-datafusion`'s `read_text_files` and `read_chunks`.

pub mod corpus;
