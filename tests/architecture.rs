//! The module graph, read from the source: data flows one way. Every `crate::…` and `super::…`
//! path in `src/` is an edge from the file's module to the module it names; the rooms (the
//! top-level modules) and the page's panels must form no cycle, and the lower rooms must not
//! reach up (`formats` knows no SAE or model, `gemm` knows neither, `sae` and `model` know no GPU).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `src/sae/cpu.rs` → `["sae", "cpu"]`; `mod.rs`, `lib.rs` and `main.rs` name their folder.
fn module_of(path: &Path) -> Vec<String> {
    let rel = path.strip_prefix("src").unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Module paths a file's code names: `crate::a::b…` absolutely, `super::…` relative to the file.
/// Comments are left out (they may name modules freely).
fn referenced_modules(module: &[String], source: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap();
        // `super` in the file of module a::b is a (in `a/mod.rs`, module a, it is the root).
        let parent = module[..module.len().saturating_sub(1)].to_vec();
        for (prefix, base) in [("crate::", Vec::new()), ("super::", parent.clone())] {
            let mut rest = code;
            while let Some(at) = rest.find(prefix) {
                let preceded_by_ident = rest[..at].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
                let tail = &rest[at + prefix.len()..];
                let path: String = tail.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
                if !preceded_by_ident {
                    let mut target = base.clone();
                    target.extend(path.split("::").filter(|s| !s.is_empty()).map(str::to_string));
                    // `use super::{a, b::C}` names a and b (groups on one line, not nested).
                    let group = tail[path.len()..].strip_prefix('{').and_then(|g| g.split_once('}')).map(|(g, _)| g);
                    match group {
                        Some(items) if !items.contains('{') => {
                            for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                                let mut t = target.clone();
                                t.extend(item.split(" as ").next().unwrap().split("::").map(str::trim).map(str::to_string));
                                found.push(t);
                            }
                        }
                        _ => found.push(target),
                    }
                }
                rest = tail;
            }
        }
    }
    found
}

/// Every edge `from → to` between distinct modules at `depth` path components (1: the rooms).
fn graph(depth: usize, within: Option<&str>) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(file);
        if module.is_empty() || within.is_some_and(|w| module[0] != w) {
            continue;
        }
        let from = module.iter().take(depth).cloned().collect::<Vec<_>>().join("::");
        for target in referenced_modules(&module, &std::fs::read_to_string(file).unwrap()) {
            // The longest prefix of the path that is a module of the crate.
            let Some(len) = (1..=target.len()).rev().find(|&n| modules.contains(&target[..n])) else { continue };
            if within.is_some_and(|w| target[0] != w) || len < depth.min(target.len()) {
                continue;
            }
            let to = target.iter().take(depth).cloned().collect::<Vec<_>>().join("::");
            // A module and its own parent (`super::X` for what `mod.rs` defines) are one unit.
            let is_ancestor = from.starts_with(&format!("{to}::"));
            if to != from && !to.is_empty() && !is_ancestor {
                edges.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    edges
}

/// A cycle of the graph, if it has one (depth-first search).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let start = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node) {
            if let Some(c) = visit(node, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn the_rooms_import_one_way() {
    let edges = graph(1, None);
    assert!(edges.get("cli").is_some_and(|e| e.contains("sae")), "the scan found no imports at all: {edges:?}");
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle between rooms: {}", cycle.join(" → "));
    }
    let reaches = |from: &str, to: &str| edges.get(from).is_some_and(|e| e.contains(to));
    for low in ["formats", "gemm", "random", "reference"] {
        for high in ["sae", "model", "gpu", "train", "lm", "engine", "dashboard", "cli", "ui"] {
            assert!(!reaches(low, high), "{low} imports {high}");
        }
    }
    for host in ["sae", "model"] {
        for high in ["gpu", "train", "lm", "engine", "dashboard", "cli", "ui"] {
            assert!(!reaches(host, high), "{host} imports {high}");
        }
    }
}

#[test]
fn the_page_panels_import_one_way() {
    // The tabs (depth 2), and the panels of the language-model view (depth 3).
    for depth in [2, 3] {
        let edges = graph(depth, Some("ui"));
        assert!(!edges.is_empty(), "the scan found no imports between the page's modules");
        if let Some(cycle) = find_cycle(&edges) {
            panic!("import cycle between the page's modules: {}", cycle.join(" → "));
        }
    }
    assert!(graph(3, Some("ui")).keys().any(|m| m.starts_with("ui::lm::")), "the scan found the view's panels");
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    edges.entry("a".into()).or_default().insert("b".into());
    edges.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&edges), None);
    edges.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&edges), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    // `super::` in a file resolves to its parent module.
    let refs = referenced_modules(&["ui".into(), "lm".into()], "use super::lm_train::X; // crate::gpu");
    assert_eq!(refs, vec![vec!["ui".to_string(), "lm_train".into(), "X".into()]]);
    let refs = referenced_modules(&["ui".into(), "lm".into(), "feature".into()], "use super::{steering, web::X as Y};");
    assert_eq!(
        refs,
        vec![vec!["ui".to_string(), "lm".into(), "steering".into()], vec!["ui".into(), "lm".into(), "web".into(), "X".into()]]
    );
}
