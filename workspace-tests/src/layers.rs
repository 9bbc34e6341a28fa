//! The layer rules of `backend/src`, checked on its source: every file's `crate::…` paths.
//!
//! - nothing outside `http/` names `crate::http` (but `startup.rs`, which mounts the routes);
//! - `http/` opens no write transaction and never audits, emits or invalidates itself: it calls
//!   an operation of `app/`;
//! - in `app/`, only the commit path (`app/commit.rs`) does those things;
//! - `store/` names no service, no `state`, no `http`;
//! - `domain/` names nothing but itself and `time`, and no I/O crate;
//! - no circle between top-level modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One source file: its path below `src/`, its top-level module, and its code lines (comments
/// and doc comments left out) with their numbers.
pub struct Source {
    pub path: String,
    pub module: String,
    pub lines: Vec<(usize, String)>,
}

/// Every `.rs` file below `dir`.
///
/// # Panics
/// When the directory cannot be read.
#[must_use]
pub fn sources(dir: &Path) -> Vec<Source> {
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let path = f.strip_prefix(dir).unwrap_or(&f).to_string_lossy().replace('\\', "/");
            let module = path.split('/').next().unwrap_or_default().trim_end_matches(".rs").to_owned();
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines = text
                .lines()
                .enumerate()
                .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or_default().to_owned()))
                .filter(|(_, l)| !l.trim().is_empty())
                .collect();
            Source { path, module, lines }
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a line names through `crate::name` or `crate::{a, b}`.
#[must_use]
pub fn named_modules(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        // `$crate`, `other_crate::` and `a::crate::` are not paths of this crate.
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '$' | ':')) {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or_default();
            out.extend(inner.split(',').map(|p| ident(p.trim())).filter(|m| !m.is_empty()));
        } else {
            let m = ident(rest);
            if !m.is_empty() {
                out.push(m);
            }
        }
    }
    out
}

fn ident(s: &str) -> String {
    s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// Every broken rule, as `file:line: what`.
#[must_use]
pub fn violations(files: &[Source]) -> Vec<String> {
    const SERVICES: &[&str] = &["alerts", "app", "audit", "cache", "jobs", "notify", "playbooks", "verify"];
    const SIDE_EFFECTS: &[&str] = &[
        "begin_write(",
        "begin_with_options(",
        ".begin()",
        "audit::record(",
        "audit::record_for_user(",
        "notify::emit(",
        "notify::emit_many(",
        "cache.invalidate(",
        "cache.announce_created(",
        "cache.drop_local(",
        ".commit()",
    ];
    const IO_CRATES: &[&str] = &["sea_orm", "actix_web", "redis", "tokio", "reqwest", "lettre", "moka"];
    let mut out = Vec::new();
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for f in files {
        for (n, line) in &f.lines {
            let at = format!("{}:{n}", f.path);
            for m in named_modules(line) {
                if m != f.module {
                    graph.entry(f.module.clone()).or_default().entry(m.clone()).or_insert_with(|| at.clone());
                }
                if m == "http" && f.module != "http" && f.path != "startup.rs" {
                    out.push(format!("{at}: only http/ (and startup.rs) may name crate::http"));
                }
                if f.module == "store" && (SERVICES.contains(&m.as_str()) || matches!(m.as_str(), "state" | "http")) {
                    out.push(format!("{at}: store/ names crate::{m}; queries must not call services"));
                }
                if f.module == "domain" && !matches!(m.as_str(), "domain" | "time") {
                    out.push(format!("{at}: domain/ names crate::{m}; it stays pure"));
                }
            }
            let adapter = f.module == "http";
            let operation = f.module == "app" && f.path != "app/commit.rs";
            if adapter || operation {
                for s in SIDE_EFFECTS.iter().filter(|s| line.contains(**s)) {
                    let who = if adapter { "an adapter" } else { "an operation" };
                    out.push(format!("{at}: {who} calls {s}…; changes go through app::commit"));
                }
            }
            if f.module == "domain" {
                for c in IO_CRATES {
                    let uses = line.trim_start().starts_with(&format!("use {c}")) || line.contains(&format!("{c}::"));
                    if uses && !line.contains(&format!("_{c}")) {
                        out.push(format!("{at}: domain/ uses {c}; it stays free of I/O"));
                    }
                }
            }
        }
    }
    out.extend(circles(&graph));
    out
}

/// Every circle between top-level modules, named by the lines that close it.
fn circles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for start in graph.keys() {
        // The shortest way back to `start`, breadth first.
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.as_str()]);
        let mut closed = None;
        while let Some(m) = queue.pop_front() {
            for next in graph.get(m).map(|d| d.keys()).into_iter().flatten() {
                if next == start {
                    closed = Some(m);
                    break;
                }
                if !prev.contains_key(next.as_str()) {
                    prev.insert(next, m);
                    queue.push_back(next);
                }
            }
            if closed.is_some() {
                break;
            }
        }
        let Some(mut m) = closed else { continue };
        let mut path = vec![start.as_str()];
        while m != start {
            path.push(m);
            m = prev.get(m).copied().unwrap_or(start);
        }
        path.reverse();
        let mut key: Vec<&str> = path.clone();
        key.sort_unstable();
        if !seen.insert(key.join(",")) {
            continue;
        }
        let mut steps = Vec::new();
        for (i, a) in path.iter().enumerate() {
            let b = path[(i + 1) % path.len()];
            let at = graph.get(*a).and_then(|d| d.get(b)).cloned().unwrap_or_default();
            steps.push(format!("{a} -> {b} ({at})"));
        }
        out.push(format!("import circle: {}", steps.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, lines: &[&str]) -> Source {
        Source {
            path: path.to_owned(),
            module: path.split('/').next().unwrap_or_default().trim_end_matches(".rs").to_owned(),
            lines: lines.iter().enumerate().map(|(i, l)| (i + 1, (*l).to_owned())).collect(),
        }
    }

    #[test]
    fn the_backend_keeps_its_layers() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../backend/src");
        let files = sources(&dir);
        assert!(files.len() > 50, "the backend's sources were not found at {}", dir.display());
        let broken = violations(&files);
        assert!(broken.is_empty(), "layer rules broken:\n{}", broken.join("\n"));
    }

    #[test]
    fn each_rule_can_fail() {
        let files = [
            file("store/keys.rs", &["use crate::audit::Entry;", "use crate::{domain, state};"]),
            file("audit/mod.rs", &["use crate::http::request_id;"]),
            file(
                "http/api/keys.rs",
                &["let txn = crate::store::begin_write(&db).await?;", "state.cache.invalidate(&h).await;"],
            ),
            file("app/keys.rs", &["crate::audit::record(&txn, &t, a, &o, e).await?;"]),
            file("domain/ids.rs", &["use sea_orm::DeriveValueType;", "use crate::store::keys;"]),
            file("cache/mod.rs", &["use crate::verify::record::KeyRecord;"]),
            file("verify/mod.rs", &["use crate::cache::KeyCache;"]),
        ];
        let broken = violations(&files);
        for expected in [
            "store/keys.rs:1: store/ names crate::audit",
            "store/keys.rs:2: store/ names crate::state",
            "audit/mod.rs:1: only http/",
            "http/api/keys.rs:1: an adapter calls begin_write(",
            "http/api/keys.rs:2: an adapter calls cache.invalidate(",
            "app/keys.rs:1: an operation calls audit::record(",
            "domain/ids.rs:1: domain/ uses sea_orm",
            "domain/ids.rs:2: domain/ names crate::store",
        ] {
            assert!(broken.iter().any(|b| b.starts_with(expected)), "{expected} not reported in {broken:#?}");
        }
        let circle = broken.iter().find(|b| b.contains("verify -> cache")).expect("the circle is reported");
        assert!(
            circle.contains("cache -> verify (cache/mod.rs:1)") && circle.contains("(verify/mod.rs:1)"),
            "{circle}"
        );
        assert!(violations(&[file("app/commit.rs", &["crate::audit::record(&txn, t, a, o, e).await?;"])]).is_empty());
        assert!(violations(&[file("startup.rs", &["use crate::http;"])]).is_empty());
    }

    #[test]
    fn paths_are_read_in_every_form() {
        assert_eq!(named_modules("use crate::{app, domain::KeyId};"), ["app", "domain"]);
        assert_eq!(named_modules("x = crate::store::keys::get(keyroll::crate::no)"), ["store"]);
        assert!(named_modules("$crate::foo").is_empty());
    }
}
