//! The crate's layering, read from its source: the core (`error`,
//! `embedder`, `memory`, `batch`, `config`, and the leaves they share)
//! never names a backend, module dependencies have no cycle (between
//! top-level modules, and between the files of one module), and modules
//! import from the module that defines an item, not through the crate
//! root's re-exports. A grep-level check of `crate::`/`super::` paths in
//! code (comments and doc links are not dependencies).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that must not know any backend.
const CORE: &[&str] = &[
    "precision",
    "pressure",
    "error",
    "env",
    "embedder",
    "memory",
    "source",
    "batch",
    "config",
    "rerank",
];

/// Code lines of a file: comments and doc comments dropped.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim_start().starts_with("//"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `src/memory/budget.rs` → `["memory", "budget"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The identifiers that follow `prefix` in code lines of `text`.
fn paths_after<'t>(text: &'t str, prefix: &'t str) -> impl Iterator<Item = String> + 't {
    code_lines(text).flat_map(move |line| {
        line.match_indices(prefix)
            .map(|(i, _)| {
                line[i + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
    })
}

/// A cycle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

struct Source {
    module: Vec<String>,
    text: String,
    file: PathBuf,
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|file| Source {
            module: module_of(&src, &file),
            text: std::fs::read_to_string(&file).unwrap(),
            file,
        })
        .collect()
}

#[test]
fn top_level_modules_form_layers_and_the_core_knows_no_backend() {
    let sources = sources();
    let top: BTreeSet<String> = sources
        .iter()
        .filter_map(|s| s.module.first().cloned())
        .collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &sources {
        let Some(from) = s.module.first() else {
            continue; // lib.rs: the crate root re-exports everything
        };
        for to in paths_after(&s.text, "crate::") {
            if top.contains(&to) && &to != from && to != "test_util" {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
        graph.entry(from.clone()).or_default();
    }
    eprintln!("module dependencies:");
    for (from, to) in &graph {
        eprintln!("  {from} -> {to:?}");
    }
    assert_eq!(find_cycle(&graph), None, "a cycle between modules");
    for core in CORE {
        let deps = graph.get(*core).cloned().unwrap_or_default();
        assert!(!deps.contains("bert"), "{core} depends on the BERT backend");
    }
    for s in sources
        .iter()
        .filter(|s| s.module.first().is_some_and(|m| CORE.contains(&m.as_str())))
    {
        for backend in ["candle_", "tokenizers::", "gemm::", "hf_hub::"] {
            // hf-hub is the hub feature's source backend, inside `source`.
            if backend == "hf_hub::" && s.module.first().is_some_and(|m| m == "source") {
                continue;
            }
            assert!(
                !code_lines(&s.text).any(|l| l.contains(backend)),
                "{} names {backend}",
                s.file.display()
            );
        }
    }
}

#[test]
fn the_files_of_each_module_form_layers() {
    let sources = sources();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sources.iter().filter(|s| s.module.len() >= 2) {
        let parent = &s.module[..s.module.len() - 1];
        let from = s.module.join("::");
        for sibling in paths_after(&s.text, "super::") {
            let mut to = parent.to_vec();
            to.push(sibling);
            let to = to.join("::");
            if sources.iter().any(|o| o.module.join("::") == to) && to != from {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
        graph.entry(from).or_default();
    }
    assert_eq!(
        find_cycle(&graph),
        None,
        "a cycle between the files of a module"
    );
}

#[test]
fn modules_import_from_the_defining_module() {
    for s in sources().iter().filter(|s| !s.module.is_empty()) {
        for item in paths_after(&s.text, "crate::") {
            assert!(
                !item.starts_with(|c: char| c.is_ascii_uppercase()),
                "{} uses crate::{item}, a root re-export: import it from its module",
                s.file.display()
            );
        }
    }
}

#[test]
fn the_checks_see_a_cycle_and_a_root_import() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("a".into());
    assert!(find_cycle(&g).is_some());
    g.get_mut("b").unwrap().clear();
    assert_eq!(find_cycle(&g), None);
    let items: Vec<String> =
        paths_after("use crate::Embedder;\n// crate::Doc\n", "crate::").collect();
    assert_eq!(items, ["Embedder"]);
}
