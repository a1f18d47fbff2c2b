//! The README's Architecture map, held to the code: every source file of every workspace crate
//! has a row and every row names something that exists; no file imports a module of its crate
//! that its row does not name ("may import"); the core's modules import each other without a
//! circle; the core never names the glue or proxy-wasm. Runs without Envoy (`make unit`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MARKER: &str = "<!-- architecture map: checked by tests/architecture.rs -->";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One row of the map: the paths it names (files, or folders ending in `/`) and what they may
/// import (`None`: not checked, e.g. "everything (tests)").
struct Row {
    paths: Vec<String>,
    may_import: Option<BTreeSet<String>>,
}

/// The backticked words of a table cell.
fn ticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn map_rows() -> Vec<Row> {
    let readme = fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find(MARKER)
        .expect("README Architecture: the map marker is missing");
    readme[start + MARKER.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            assert_eq!(cells.len(), 3, "a map row has three cells: {line}");
            let import = cells[2].trim();
            let may_import = if import == "nothing" {
                Some(BTreeSet::new())
            } else if import.contains('`') {
                Some(ticked(import).into_iter().collect())
            } else {
                None
            };
            Row {
                paths: ticked(cells[0]),
                may_import,
            }
        })
        .collect()
}

/// The `src/` folder of every workspace member (the root crate's is `src`).
fn crate_sources() -> Vec<String> {
    let manifest = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let members = manifest
        .split("members = [")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .expect("workspace members");
    members
        .split(',')
        .map(|m| m.trim().trim_matches('"'))
        .filter(|m| !m.is_empty())
        .map(|m| {
            if m == "." {
                "src".to_string()
            } else {
                format!("{m}/src")
            }
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// One `.rs` file of a workspace crate: the crate's `src` folder, its path from the
/// repository root, and its full path.
struct SourceFile {
    src: String,
    rel: String,
    path: PathBuf,
}

/// A path under the repository, as the README map writes it.
fn rel_path(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap()
        .to_string_lossy()
        .to_string()
}

/// Every `.rs` file under every workspace crate's `src/`.
fn source_files() -> Vec<SourceFile> {
    let mut out = Vec::new();
    for src in crate_sources() {
        let mut files = Vec::new();
        rust_files(&root().join(&src), &mut files);
        for path in files {
            let rel = rel_path(&path);
            out.push(SourceFile {
                src: src.clone(),
                rel,
                path,
            });
        }
    }
    out
}

/// A unit-test file (`tests.rs`, or anything in a `tests/` folder inside a crate's `src/`).
fn is_test_file(rel: &str) -> bool {
    rel.ends_with("/tests.rs") || rel.split('/').skip(1).any(|part| part == "tests")
}

/// The top-level module a file belongs to (`core/src/tracer/start.rs` → `tracer`); `None` for
/// the crate root.
fn own_module(src: &str, rel: &str) -> Option<String> {
    let inner = rel.strip_prefix(src)?.trim_start_matches('/');
    let first = inner.split('/').next()?;
    let name = first.trim_end_matches(".rs");
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// A file's code: comments and an inline `mod tests { .. }` left out.
fn code_of(text: &str) -> String {
    text.split("#[cfg(test)]\nmod tests {")
        .next()
        .unwrap_or("")
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules of its own crate a file imports (`crate::x`, `crate::{x, y}`), and
/// `core` when it names the core crate. Comments and an inline `mod tests { .. }` are skipped.
fn imports(text: &str) -> BTreeSet<String> {
    let code = code_of(text);
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `gateway_tracing_core::` is not `crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for part in inner.split(',') {
                let name = part.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() && name != "self" {
                    out.insert(name.to_string());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    if code.contains("gateway_tracing_core::") {
        out.insert("core".to_string());
    }
    out
}

#[test]
fn the_readme_map_lists_every_source_file_and_nothing_else() {
    let rows = map_rows();
    let named: BTreeSet<&str> = rows
        .iter()
        .flat_map(|r| r.paths.iter().map(String::as_str))
        .collect();
    for path in &named {
        assert!(
            root().join(path).exists(),
            "README map names `{path}`, which does not exist"
        );
    }
    let mut missing = Vec::new();
    for SourceFile { rel, .. } in source_files() {
        let listed = named.contains(rel.as_str())
            || (is_test_file(&rel) && named.iter().any(|n| n.ends_with('/') && rel.starts_with(n)));
        if !listed {
            missing.push(rel);
        }
    }
    assert!(
        missing.is_empty(),
        "source files without a row in the README Architecture map: {missing:?}"
    );
}

#[test]
fn no_file_imports_what_its_row_does_not_allow() {
    let rows = map_rows();
    let mut wrong = Vec::new();
    for SourceFile { src, rel, path: f } in source_files() {
        if is_test_file(&rel) {
            continue;
        }
        let Some(allowed) = rows
            .iter()
            .find(|r| r.paths.contains(&rel))
            .and_then(|r| r.may_import.as_ref())
        else {
            continue;
        };
        let own = own_module(&src, &rel);
        let text = fs::read_to_string(&f).unwrap();
        for m in imports(&text) {
            if Some(&m) != own.as_ref() && !allowed.contains(&m) {
                wrong.push(format!("{rel} imports `{m}`"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports the README map does not allow (fix the code, or the map's \"may import\"): {wrong:#?}"
    );
}

/// Each top-level module of the crate under `src` (its files outside tests; the test doubles
/// in `testing` import everything by design) → the top-level modules it imports.
fn module_edges(src: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&root().join(src), &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = rel_path(&f);
        let Some(own) = own_module(src, &rel).filter(|m| m != "testing") else {
            continue;
        };
        if is_test_file(&rel) {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap();
        let deps = edges.entry(own.clone()).or_default();
        deps.extend(imports(&text).into_iter().filter(|m| *m != own));
    }
    edges
}

#[test]
fn the_cores_modules_import_each_other_without_a_circle() {
    let src = "core/src";
    let mut files = Vec::new();
    rust_files(&root().join(src), &mut files);
    for f in files {
        let rel = rel_path(&f);
        if !is_test_file(&rel) {
            let code = code_of(&fs::read_to_string(&f).unwrap());
            assert!(
                !code.contains("proxy_wasm") && !code.contains("gateway_tracing::"),
                "{rel}: the core never names proxy-wasm or the glue"
            );
        }
    }
    let edges = module_edges(src);
    assert_no_circle("the core", &edges);
    assert!(edges.len() >= 10, "the core's modules were read: {edges:?}");
}

/// Most lines a source file may hold outside its tests: past this a file holds more than one
/// noun (issue 15: the 900-line exporter).
const MAX_LINES: usize = 600;

#[test]
fn no_source_file_has_more_than_600_lines_outside_its_tests() {
    let mut long = Vec::new();
    for SourceFile { rel, path: f, .. } in source_files() {
        if is_test_file(&rel) {
            continue;
        }
        let text = fs::read_to_string(&f).unwrap();
        let lines = text
            .split("#[cfg(test)]\nmod tests {")
            .next()
            .unwrap_or("")
            .lines()
            .count();
        if lines > MAX_LINES {
            long.push(format!("{rel}: {lines} lines"));
        }
    }
    assert!(long.is_empty(), "split these by noun: {long:?}");
}

/// The checker itself, on inputs with a known answer.
#[test]
fn import_reading_rows() {
    struct Row {
        text: &'static str,
        want: &'static [&'static str],
        reason: &'static str,
    }
    let rows = [
        Row {
            text: "use crate::config::Config;",
            want: &["config"],
            reason: "a plain path",
        },
        Row {
            text: "use crate::{host::Host, metrics};",
            want: &["host", "metrics"],
            reason: "a group",
        },
        Row {
            text: "let x = crate::url::strip_query(p);",
            want: &["url"],
            reason: "a path in code",
        },
        Row {
            text: "// crate::ids in a comment",
            want: &[],
            reason: "comments are not imports",
        },
        Row {
            text: "use gateway_tracing_core::tracer;",
            want: &["core"],
            reason: "the core crate",
        },
        Row {
            text: "fn a() {}\n#[cfg(test)]\nmod tests {\nuse crate::testing;\n}",
            want: &[],
            reason: "inline tests are not the module's imports",
        },
    ];
    for r in rows {
        let got: Vec<String> = imports(r.text).into_iter().collect();
        assert_eq!(got, r.want, "{}", r.reason);
    }
    assert!(is_test_file("core/src/tracer/tests/naming.rs"));
    assert!(is_test_file("core/src/config/tests.rs"));
    assert!(
        !is_test_file("tests/support/src/stub.rs"),
        "a crate named tests is not a test file"
    );
    assert_eq!(
        own_module("core/src", "core/src/tracer/start.rs").as_deref(),
        Some("tracer")
    );
    assert_eq!(
        own_module("core/src", "core/src/host.rs").as_deref(),
        Some("host")
    );
    assert_eq!(own_module("core/src", "core/src/lib.rs"), None);
}

/// Panics naming the first import circle found among `edges` (module → modules it imports).
fn assert_no_circle(what: &str, edges: &BTreeMap<String, BTreeSet<String>>) {
    // Depth-first search for a back edge.
    fn visit(
        what: &str,
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(i) = path.iter().position(|p| p == m) {
            panic!("import circle in {what}: {:?} -> {m}", &path[i..]);
        }
        path.push(m.to_string());
        for d in edges.get(m).into_iter().flatten() {
            visit(what, d, edges, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in edges.keys() {
        visit(what, m, edges, &mut Vec::new(), &mut done);
    }
}

/// The two glues are flat (one module per file): no file imports, through others, itself. The
/// native glue once had `process` → `bootstrap` → `process` (the drain check); the panic
/// boundary now lives in `guard.rs` and the hooks run the drain check.
#[test]
fn the_glues_files_import_each_other_without_a_circle() {
    for (src, what, at_least) in [
        ("native/src", "the native glue", 7),
        ("src", "the wasm glue", 5),
    ] {
        let edges = module_edges(src);
        assert!(
            edges.len() >= at_least,
            "{what}'s files were read: {edges:?}"
        );
        assert_no_circle(what, &edges);
    }
}
