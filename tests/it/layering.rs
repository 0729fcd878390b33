//! The workspace's layering, read from its source: the core (`error`,
//! `embedder`, `memory`, `batch`, `config`, and the leaves they share)
//! never names a backend; the BERT backend knows only the core's lower
//! layers; memory is read through the budget's probe (no `SystemProbe` made
//! outside `memory`); no crate's files import each other in a circle (every
//! crate of the workspace, its `src/`); modules import from the module that
//! defines an item, not through the crate root's re-exports; and the
//! DataFusion crate does not reach into the CLI application. A grep-level
//! check of `crate::`/`super::` paths in code (comments and doc links are
//! not dependencies); each test prints the graph it checked.

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
    "model_config",
    "config",
    "settings",
    "rerank",
];

/// What the BERT backend may import: the core's lower layers, never the
/// batching, the service or the configuration that gathers them.
const BACKEND_MAY_USE: &[&str] = &[
    "error",
    "env",
    "embedder",
    "memory",
    "source",
    "precision",
    "pressure",
    "model_config",
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
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
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

/// The files of the `src/` directory of the crate at `dir` (the
/// workspace root, or a member), but its `src/bin/` programs: each of
/// those is a crate of its own.
fn sources_of(dir: &Path) -> Vec<Source> {
    let src = dir.join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|f| !f.starts_with(src.join("bin")));
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

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sources() -> Vec<Source> {
    sources_of(&workspace())
}

/// Every crate of the workspace: the library at the root and the members
/// under `crates/`.
fn crates() -> Vec<PathBuf> {
    let mut dirs = vec![workspace()];
    let mut members: Vec<PathBuf> = std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("src").is_dir())
        .collect();
    members.sort();
    dirs.extend(members);
    dirs
}

/// The file-level import graph of one crate: an edge from a file to the
/// file of each module it names through `crate::` or `super::` (the
/// longest prefix of the path that is a module of the crate), the crate
/// root left out (it declares and re-exports every module).
fn file_graph(sources: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    let resolve = |mut path: Vec<String>| -> Option<String> {
        while !path.is_empty() {
            if modules.contains(&path) {
                return Some(path.join("::"));
            }
            path.pop();
        }
        None
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in sources.iter().filter(|s| !s.module.is_empty()) {
        let from = s.module.join("::");
        let parent = &s.module[..s.module.len() - 1];
        let mut targets = Vec::new();
        for line in code_lines(&s.text) {
            for (prefix, base) in [("crate::", &[][..]), ("super::", parent)] {
                for (i, _) in line.match_indices(prefix) {
                    // `self::super::` and `crate::` inside longer names are
                    // not paths of this crate.
                    if line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                        continue;
                    }
                    let rest: Vec<String> = line[i + prefix.len()..]
                        .split("::")
                        .map(|seg| {
                            seg.chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_')
                                .collect::<String>()
                        })
                        .take_while(|seg| !seg.is_empty())
                        .collect();
                    let mut path = base.to_vec();
                    path.extend(rest);
                    targets.push(path);
                }
            }
        }
        let entry = graph.entry(from.clone()).or_default();
        for t in targets {
            if let Some(to) = resolve(t) {
                if to != from && to != "test_util" {
                    entry.insert(to);
                }
            }
        }
    }
    graph
}

/// A file's code before its unit tests (`#[cfg(test)]` modules come last
/// in this workspace's files).
fn library_code(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
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
fn no_crate_of_the_workspace_has_a_circle_of_files() {
    for dir in crates() {
        let graph = file_graph(&sources_of(&dir));
        eprintln!("{}: file dependencies:", dir.display());
        for (from, to) in &graph {
            eprintln!("  {from} -> {to:?}");
        }
        assert_eq!(
            find_cycle(&graph),
            None,
            "a circle of files in {}",
            dir.display()
        );
    }
}

#[test]
fn the_backend_knows_only_the_cores_lower_layers() {
    let mut used = BTreeSet::new();
    for s in sources()
        .iter()
        .filter(|s| s.module.first().is_some_and(|m| m == "bert"))
    {
        for to in paths_after(&s.text, "crate::") {
            assert!(
                BACKEND_MAY_USE.contains(&to.as_str()) || to == "test_util",
                "{} uses crate::{to}: the backend may use only {BACKEND_MAY_USE:?}",
                s.file.display()
            );
            used.insert(to);
        }
    }
    eprintln!("bert uses {used:?}");
    assert!(
        used.contains("embedder"),
        "the check reads the backend's files"
    );
}

#[test]
fn memory_is_read_only_through_the_memory_module() {
    let mut checked = 0;
    for s in sources()
        .iter()
        .filter(|s| s.module.first().is_some_and(|m| m != "memory"))
    {
        checked += 1;
        assert!(
            !code_lines(library_code(&s.text)).any(|l| l.contains("SystemProbe::new")),
            "{} makes its own SystemProbe: read memory through the budget's probe",
            s.file.display()
        );
    }
    assert!(checked > 20, "the check reads the library's files");
}

#[test]
fn the_datafusion_crate_does_not_reach_into_the_cli_application() {
    // Cargo.lock's packages and their dependencies, read by hand: each
    // `[[package]]` has a `name` and a `dependencies` list of "name" or
    // "name version" strings.
    let lock = std::fs::read_to_string(workspace().join("Cargo.lock")).unwrap();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for package in lock.split("[[package]]").skip(1) {
        let name = package
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .unwrap()
            .trim_matches('"')
            .to_string();
        let list = package
            .split("dependencies = [")
            .nth(1)
            .map_or("", |rest| rest.split(']').next().unwrap());
        let entry = deps.entry(name).or_default();
        for dep in list.split(',').map(|d| d.trim().trim_matches('"')) {
            if let Some(dep_name) = dep.split(' ').next().filter(|n| !n.is_empty()) {
                entry.insert(dep_name.to_string());
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut stack = vec!["membatch-datafusion".to_string()];
    while let Some(p) = stack.pop() {
        if seen.insert(p.clone()) {
            stack.extend(deps.get(&p).into_iter().flatten().cloned());
        }
    }
    assert!(seen.contains("membatch-corpus") && seen.contains("datafusion"));
    for application in ["membatch-cli", "redb"] {
        assert!(
            !seen.contains(application),
            "membatch-datafusion depends on {application}"
        );
    }
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

    // Two files of one module naming each other (through `super::` and
    // `crate::`) are a circle; a file naming its parent is not.
    let file = |module: &[&str], text: &str| Source {
        module: module.iter().map(|m| m.to_string()).collect(),
        text: text.to_string(),
        file: PathBuf::new(),
    };
    let mut files = vec![
        file(&["a"], "mod b;\nmod c;\n"),
        file(&["a", "b"], "use super::c::Thing;\nuse super::helper;\n"),
        file(&["a", "c"], "use crate::a::b::{self, Other};\n"),
    ];
    let graph = file_graph(&files);
    assert_eq!(graph["a::b"], BTreeSet::from(["a::c".into(), "a".into()]));
    assert!(find_cycle(&graph).is_some());
    files[2].text = "// use crate::a::b;\n".into();
    assert_eq!(find_cycle(&file_graph(&files)), None);
}
