//! The layout's rules, checked over the source text (ARCHITECTURE.md):
//!
//! 1. No import circle: the graph of `src/` files, with an edge wherever one file names a path
//!    into another (`use` lines and inline `crate::`/`super::` paths, test modules left out),
//!    has no cycle. A handler that imports its dispatcher back is such a cycle.
//! 2. Rooms import only the rooms below them: protocol ← policy ← config ← observe ← runtime.
//! 3. Inside the runtime, each folder imports only what its module doc allows; in particular
//!    no handler, no HTTP/2 module and nothing below them imports `conn::dispatch` or
//!    `conn::accept`.
//!
//! The analysis is a small lexer (comments and literals blanked) and a resolver of `use` trees
//! against the files that exist; `finds_a_planted_cycle_and_a_forbidden_import` shows that it
//! catches what it should on a tree made for the purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module path (`["runtime", "conn", "client"]`) to its file, for every file under `src`.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut segs: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            let last = segs.pop().expect("file name");
            match last.as_str() {
                "main.rs" if segs.is_empty() => continue, // the binary: uses `ringway::` only
                "lib.rs" | "mod.rs" => {}
                other => segs.push(other.trim_end_matches(".rs").to_string()),
            }
            out.insert(segs, path);
        }
    }
    out
}

/// The code of a file with comments, string, byte-string and char literals blanked, and
/// `#[cfg(test)]` inline modules removed.
fn code_of(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(b' ');
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"'
                    && b[j + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|&&h| h == b'#')
                        .count()
                        == hashes
                {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.extend_from_slice(b"\"\"");
            i = j;
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.extend_from_slice(b"\"\"");
        } else if c == b'\'' && (b.get(i + 1) == Some(&b'\\') || b.get(i + 2) == Some(&b'\'')) {
            // A char literal ('x', '\n', '\u{..}'); a lifetime has no closing quote.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.extend_from_slice(b"' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    let code = String::from_utf8_lossy(&out).into_owned();
    drop_test_modules(&code)
}

/// Removes `#[cfg(test)] mod NAME { ... }` blocks (braces balance: literals are blanked).
fn drop_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        let after = &rest[at + "#[cfg(test)]".len()..];
        let trimmed = after.trim_start();
        let is_mod = trimmed.starts_with("mod ") || trimmed.starts_with("pub mod ");
        let open = trimmed.find('{');
        let semi = trimmed.find(';');
        if !is_mod || open.is_none() || semi.is_some_and(|s| s < open.unwrap_or(0)) {
            out.push_str(&rest[..at + "#[cfg(test)]".len()]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..at]);
        let start = rest.len() - trimmed.len() + open.unwrap_or(0);
        let mut depth = 0usize;
        let mut end = rest.len();
        for (k, ch) in rest[start..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = start + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Expands a `use` tree (`a::{b, c::{self, d}}`) into full paths.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head: Vec<String> = tree[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let n = prefix.len();
        prefix.extend(head);
        let mut depth = 0;
        let mut last = 0;
        for (k, ch) in inner.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[last..k], prefix, out);
                    last = k + 1;
                }
                _ => {}
            }
        }
        expand(&inner[last..], prefix, out);
        prefix.truncate(n);
        return;
    }
    let tree = tree.split(" as ").next().unwrap_or("").trim();
    if tree.is_empty() {
        return;
    }
    let mut p = prefix.clone();
    for seg in tree.split("::").map(str::trim) {
        if seg == "self" || seg == "*" {
            continue;
        }
        p.push(seg.to_string());
    }
    out.push(p);
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Every path a file's code names that may lead into another module: its `use` trees, and
/// inline paths starting with `crate`, `super`, `self` or a child module's name.
fn paths_in(code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let b = code.as_bytes();
    // `use` statements.
    let mut rest_code = String::with_capacity(code.len());
    let mut i = 0;
    while i < b.len() {
        let at_word = i == 0 || !is_ident_byte(b[i - 1]);
        if at_word && code[i..].starts_with("use ") {
            let end = code[i..].find(';').map_or(code.len(), |e| i + e);
            expand(&code[i + 4..end], &mut Vec::new(), &mut out);
            i = end + 1;
            continue;
        }
        rest_code.push(b[i] as char);
        i += 1;
    }
    // Inline paths.
    let b = rest_code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !is_ident_byte(b[i]) || (i > 0 && (is_ident_byte(b[i - 1]) || b[i - 1] == b':')) {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut segs = Vec::new();
        loop {
            let s = j;
            while j < b.len() && is_ident_byte(b[j]) {
                j += 1;
            }
            segs.push(rest_code[s..j].to_string());
            if rest_code[j..].starts_with("::") && b.get(j + 2).is_some_and(|&c| is_ident_byte(c)) {
                j += 2;
            } else {
                break;
            }
        }
        if segs.len() > 1 {
            let first = segs[0].as_str();
            if matches!(first, "crate" | "super" | "self") || children.contains(first) {
                out.push(segs);
            }
        }
        i = j.max(i + 1);
    }
    out
}

/// The deepest module (with a file) that `path`, named inside module `at`, leads into.
fn resolve(
    at: &[String],
    path: &[String],
    mods: &BTreeMap<Vec<String>, PathBuf>,
) -> Option<Vec<String>> {
    let mut base: Vec<String>;
    let mut segs = path;
    match path.first().map(String::as_str) {
        Some("crate") => {
            base = Vec::new();
            segs = &path[1..];
        }
        Some("self") => {
            base = at.to_vec();
            segs = &path[1..];
        }
        Some("super") => {
            base = at.to_vec();
            while segs.first().map(String::as_str) == Some("super") {
                base.pop()?;
                segs = &segs[1..];
            }
        }
        Some(first) => {
            // Relative: a child module of `at`, else an external crate.
            let mut child = at.to_vec();
            child.push(first.to_string());
            if !mods.contains_key(&child) {
                return None;
            }
            base = at.to_vec();
        }
        None => return None,
    }
    for s in segs {
        let mut next = base.clone();
        next.push(s.clone());
        if !mods.contains_key(&next) {
            break;
        }
        base = next;
    }
    Some(base)
}

/// File-level import graph: module → modules it names (itself and the crate root left out).
fn graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mods = modules(src);
    let mut g = BTreeMap::new();
    for (m, file) in &mods {
        let text = fs::read_to_string(file).expect("read source");
        let code = code_of(&text);
        let children: BTreeSet<String> = mods
            .keys()
            .filter(|k| k.len() == m.len() + 1 && k.starts_with(m))
            .map(|k| k[m.len()].clone())
            .collect();
        let mut edges = BTreeSet::new();
        for p in paths_in(&code, &children) {
            if let Some(target) = resolve(m, &p, &mods) {
                if &target != m && !target.is_empty() {
                    edges.insert(target);
                }
            }
        }
        g.insert(m.clone(), edges);
    }
    g
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Every cycle's members (strongly connected components of more than one module).
fn cycles(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    // Tarjan's algorithm, iterative enough for a few hundred nodes (recursion is fine here).
    struct T<'a> {
        g: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Vec<String>) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.get(v).into_iter().flatten() {
            let Some((w, _)) = g.get_key_value(w) else {
                continue;
            };
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(name(w));
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// (importer prefix, forbidden target prefix, why). A prefix matches a module and everything
/// below it.
const FORBIDDEN: &[(&str, &str, &str)] = &[
    // Rooms: each imports only the rooms below it.
    ("protocol", "policy", "protocol is the lowest room"),
    ("protocol", "config", "protocol is the lowest room"),
    ("protocol", "observe", "protocol is the lowest room"),
    ("protocol", "runtime", "protocol is sans-IO"),
    ("policy", "config", "policy sits below config"),
    ("policy", "observe", "policy sits below observe"),
    ("policy", "runtime", "policy is sans-IO"),
    ("config", "observe", "config sits below observe"),
    ("config", "runtime", "config sits below the runtime"),
    (
        "observe",
        "runtime",
        "observe only formats; the runtime writes",
    ),
    // Inside the runtime.
    (
        "runtime::net",
        "runtime::backend",
        "net is the runtime's lowest folder",
    ),
    (
        "runtime::net",
        "runtime::conn",
        "net is the runtime's lowest folder",
    ),
    (
        "runtime::net",
        "runtime::handlers",
        "net is the runtime's lowest folder",
    ),
    (
        "runtime::net",
        "runtime::h2",
        "net is the runtime's lowest folder",
    ),
    (
        "runtime::net",
        "runtime::control",
        "net is the runtime's lowest folder",
    ),
    (
        "runtime::net",
        "runtime::shard",
        "net is the runtime's lowest folder",
    ),
    (
        "runtime::backend",
        "runtime::conn",
        "the backend side knows no client connection",
    ),
    (
        "runtime::backend",
        "runtime::handlers",
        "the backend side knows no handler",
    ),
    (
        "runtime::backend",
        "runtime::h2",
        "the backend side knows no handler",
    ),
    (
        "runtime::backend",
        "runtime::shard",
        "a shard holds the backends, not the reverse",
    ),
    (
        "runtime::handlers",
        "runtime::conn::dispatch",
        "a handler imports its dispatcher back",
    ),
    (
        "runtime::handlers",
        "runtime::conn::accept",
        "a handler imports its dispatcher back",
    ),
    (
        "runtime::handlers",
        "runtime::h2",
        "HTTP/2 dispatches to handlers, not the reverse",
    ),
    (
        "runtime::handlers",
        "runtime::control",
        "handlers run on the data path",
    ),
    (
        "runtime::h2",
        "runtime::conn::dispatch",
        "HTTP/2 imports the HTTP/1.1 dispatcher",
    ),
    (
        "runtime::h2",
        "runtime::conn::accept",
        "HTTP/2 imports its dispatcher back",
    ),
    (
        "runtime::conn::client",
        "runtime::conn::dispatch",
        "session types import the dispatcher",
    ),
    (
        "runtime::conn::client",
        "runtime::handlers",
        "session types import a handler",
    ),
    (
        "runtime::conn::dispatch",
        "runtime::conn::accept",
        "dispatch imports its acceptor",
    ),
    (
        "runtime::shard",
        "runtime::conn",
        "a shard imports the connections it serves",
    ),
    (
        "runtime::shard",
        "runtime::handlers",
        "a shard imports the handlers",
    ),
];

fn under(m: &[String], prefix: &str) -> bool {
    let p: Vec<&str> = prefix.split("::").collect();
    m.len() >= p.len() && m.iter().zip(&p).all(|(a, b)| a == b)
}

/// Every rule the graph breaks, as readable lines.
fn violations(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<String> {
    let mut out = Vec::new();
    for c in cycles(g) {
        out.push(format!("import circle among: {}", c.join(", ")));
    }
    for (from, tos) in g {
        for to in tos {
            for (a, b, why) in FORBIDDEN {
                if under(from, a) && under(to, b) {
                    out.push(format!("{} imports {}: {why}", name(from), name(to)));
                }
            }
        }
    }
    out
}

#[test]
fn the_source_tree_keeps_its_layout() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    // The analysis saw the tree: the dispatcher's known imports are there.
    let dispatch: Vec<String> = ["runtime", "conn", "dispatch"].map(String::from).to_vec();
    let edges = g
        .get(&dispatch)
        .expect("src/runtime/conn/dispatch.rs is read");
    for needed in [
        "runtime::handlers::proxy",
        "runtime::conn::client",
        "protocol::http::head",
    ] {
        let v: Vec<String> = needed.split("::").map(String::from).collect();
        assert!(
            edges.contains(&v),
            "dispatch → {needed} not seen: {edges:?}"
        );
    }
    let problems = violations(&g);
    assert!(
        problems.is_empty(),
        "layout rules broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn finds_a_planted_cycle_and_a_forbidden_import() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path();
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, text).expect("write");
    };
    write("lib.rs", "pub mod protocol;\npub mod runtime;\n");
    write("protocol/mod.rs", "pub mod head;\n");
    // A comment and a string that name the runtime must not count.
    write(
        "protocol/head.rs",
        "// crate::runtime::x\nconst S: &str = \"crate::runtime::conn\";\n",
    );
    write("runtime/mod.rs", "mod conn;\nmod handlers;\n");
    write(
        "runtime/conn/mod.rs",
        "pub mod dispatch;\npub mod client;\n",
    );
    write(
        "runtime/conn/dispatch.rs",
        "use crate::runtime::handlers::{admin, echo};\nuse super::client::Client;\n",
    );
    write("runtime/conn/client.rs", "use crate::protocol::head;\n");
    write("runtime/handlers/mod.rs", "pub mod admin;\npub mod echo;\n");
    write(
        "runtime/handlers/admin.rs",
        "use crate::runtime::conn::client::Client;\n",
    );
    write(
        "runtime/handlers/echo.rs",
        "pub fn f() { crate::runtime::conn::dispatch::serve(); }\n\
         #[cfg(test)]\nmod tests { use crate::runtime::conn::dispatch::x; }\n",
    );
    let g = graph(src);
    let problems = violations(&g);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("import circle among:")
                && p.contains("runtime::conn::dispatch")
                && p.contains("runtime::handlers::echo")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("runtime::handlers::echo imports runtime::conn::dispatch")),
        "{problems:#?}"
    );
    // admin imports only the session types: not a problem; the comment and string in
    // protocol::head are not imports.
    assert!(
        !problems.iter().any(|p| p.contains("handlers::admin")),
        "{problems:#?}"
    );
    assert!(
        !problems.iter().any(|p| p.starts_with("protocol")),
        "{problems:#?}"
    );
    // Without the inline call, no circle remains (the test module does not count).
    write(
        "runtime/handlers/echo.rs",
        "#[cfg(test)]\nmod tests { use crate::runtime::conn::dispatch::x; }\n",
    );
    assert!(violations(&graph(src)).is_empty());
}
