//! The layering of docs/design.md, checked on the sources: every `crate::…` and
//! `super::…` path a module names must point to its own layer or one below, and no two
//! modules of one package may import each other (directly or round a longer loop).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top; a module may use its own layer and those below it.
const LAYERS: &[&[&str]] = &[
    &["util", "memory", "metrics"],
    &["kernels"],
    &["config"],
    &["data"],
    &["device"],
    &["model"],
    &["track"],
    &["train"],
    &["report"],
    &["predict", "bench"],
    &["study"],
    &["cli"],
];

fn layer_of(package: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| l.contains(&package))
        .unwrap_or_else(|| {
            panic!("src/{package} is in no layer: add it to LAYERS and docs/design.md")
        })
}

/// Module path of a source file: `src/track/merge.rs` → ["track", "merge"].
fn module_path(file: &Path, src: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without its `#[cfg(test)]` module and its comments.
fn code(text: &str) -> String {
    let body = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    body.lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Splits `a,b::{c,d},e` at its top-level commas.
fn top_level(group: &str) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0, 0, Vec::new());
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&group[start..]);
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

/// The paths (at most two parts: package, child) a `::`-path names, braces expanded.
fn expand(path: &str, depth: usize) -> Vec<Vec<String>> {
    if depth == 0 || path.is_empty() {
        return vec![Vec::new()];
    }
    if let Some(group) = path.strip_prefix('{').and_then(|g| g.strip_suffix('}')) {
        return top_level(group)
            .into_iter()
            .flat_map(|p| expand(p, depth))
            .collect();
    }
    let (head, tail) = path.split_once("::").unwrap_or((path, ""));
    if head == "self" {
        return vec![Vec::new()];
    }
    expand(tail, depth - 1)
        .into_iter()
        .map(|mut rest| {
            rest.insert(0, head.to_string());
            rest
        })
        .collect()
}

/// Modules named by `crate::…` and `super::…` paths, in `use` trees and in code, resolved to
/// absolute module paths of at most two parts.
fn references(text: &str, here: &[String]) -> BTreeSet<Vec<String>> {
    let mut paths: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("use ") {
        let after = &rest[i + 4..];
        let end = after.find(';').unwrap_or(after.len());
        paths.push(
            after[..end]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect(),
        );
        rest = &after[end..];
    }
    paths.extend(
        text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .filter(|w| w.starts_with("crate::") || w.starts_with("super::"))
            .map(String::from),
    );
    let mut found = BTreeSet::new();
    for path in paths {
        let (base, rest): (Vec<String>, &str) = if let Some(rest) = path.strip_prefix("crate::") {
            (Vec::new(), rest)
        } else if let Some(mut rest) = path.strip_prefix("super::") {
            // A file `a/b.rs` (module a::b) sees `super` as `a`; `a/mod.rs` (module a) as the crate.
            let mut base = here[..here.len().saturating_sub(1)].to_vec();
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            (base, rest)
        } else {
            continue;
        };
        for tail in expand(rest, 2usize.saturating_sub(base.len()).max(1)) {
            let mut m = base.clone();
            m.extend(tail);
            m.truncate(2);
            found.insert(m);
        }
    }
    found
}

#[test]
fn layers_point_down_and_no_module_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let packages: BTreeSet<String> = files
        .iter()
        .map(|f| module_path(f, &src))
        .filter(|m| !m.is_empty() && m[0] != "lib" && m[0] != "main")
        .map(|m| m[0].clone())
        .collect();
    let mut upward = Vec::new();
    // Within a package, edges between its direct children (e.g. track::merge → track::tables).
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let here = module_path(file, &src);
        if here.is_empty() || here[0] == "lib" || here[0] == "main" {
            continue;
        }
        let text = code(&std::fs::read_to_string(file).unwrap());
        for target in references(&text, &here) {
            let Some(pkg) = target.first().filter(|p| packages.contains(*p)) else {
                continue; // an item of lib.rs or a name that is not a module
            };
            if pkg != &here[0] {
                if layer_of(pkg) > layer_of(&here[0]) {
                    upward.push(format!("{} uses {}", file.display(), target.join("::")));
                }
            } else if here.len() >= 2 && target.len() >= 2 && here[1] != target[1] {
                let child = src.join(pkg).join(&target[1]);
                if child.is_dir() || child.with_extension("rs").exists() {
                    edges
                        .entry(format!("{}::{}", pkg, here[1]))
                        .or_default()
                        .insert(format!("{}::{}", pkg, target[1]));
                }
            }
        }
    }
    assert!(upward.is_empty(), "upward edges:\n{}", upward.join("\n"));

    // No cycle among a package's children.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[i..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        if let Some(cycle) = visit(n, &edges, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
    // The check sees real edges (it would pass vacuously if the parser found none).
    assert!(
        edges
            .get("track::merge")
            .is_some_and(|e| e.contains("track::tables")),
        "{edges:?}"
    );
}
