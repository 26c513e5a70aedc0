//! The layout of `src/` as a graph: every `crate::` path (in `use` items, code and macro
//! arguments) is an edge from the file that writes it to the module file it names. The graph of
//! files, and the graph of top-level folders, must have no cycles: data flows one way.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// A module path: `["engine", "queue"]`; the crate root is `[]`.
type Module = Vec<String>;

fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().to_string())
        .collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Collects the paths a file writes, as segment lists starting with `crate`, `super` or `self`.
/// Every path a file writes, with how deep in inline modules (`mod tests { ... }`) it stands,
/// and the names its `use` items bring in (`use crate::exec::step;` makes `step::http` a path
/// into `crate::exec::step::http`).
#[derive(Default)]
struct Paths {
    found: Vec<(usize, Vec<String>)>,
    aliases: BTreeMap<String, Vec<String>>,
    depth: usize,
}

impl Paths {
    fn push(&mut self, segments: Vec<String>) {
        if !segments.is_empty() {
            self.found.push((self.depth, segments));
        }
    }

    fn alias(&mut self, name: String, segments: Vec<String>) {
        if self.depth == 0 && segments.first().is_some_and(|s| s == "crate") {
            self.aliases.insert(name, segments);
        }
    }

    /// The paths as `crate::...`, `self::...` or `super::...` of the file's own module.
    fn resolved(&self, children: &BTreeSet<String>) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for (depth, segments) in &self.found {
            let mut segments = segments.clone();
            let mut depth = *depth;
            if let Some(full) = self.aliases.get(&segments[0]) {
                let mut s = full.clone();
                s.extend(segments.drain(1..));
                segments = s;
            } else if children.contains(&segments[0]) {
                segments.insert(0, "self".into());
                depth = 0;
            }
            // Inside inline modules, `super` first leaves them.
            while depth > 0 && segments.first().is_some_and(|s| s == "super") {
                segments.remove(0);
                depth -= 1;
                if segments.first().is_none_or(|s| s != "super") {
                    segments.insert(0, "self".into());
                    break;
                }
            }
            if matches!(
                segments.first().map(String::as_str),
                Some("crate" | "super" | "self")
            ) {
                out.push(segments);
            }
        }
        out
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut s = prefix.clone();
                if n.ident != "self" {
                    s.push(n.ident.to_string());
                }
                if let Some(last) = s.last() {
                    self.alias(last.clone(), s.clone());
                }
                self.push(s);
            }
            syn::UseTree::Rename(r) => {
                let mut s = prefix.clone();
                if r.ident != "self" {
                    s.push(r.ident.to_string());
                }
                self.alias(r.rename.to_string(), s.clone());
                self.push(s);
            }
            syn::UseTree::Glob(_) => self.push(prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }

    /// Macro arguments are not parsed as Rust: look for `crate :: a :: b` token runs.
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(id) if *id == "crate" => {
                    let mut segments = vec!["crate".to_string()];
                    let mut j = i + 1;
                    while j + 2 < trees.len() + 1 {
                        let colons = matches!(&trees.get(j), Some(TokenTree::Punct(p)) if p.as_char() == ':')
                            && matches!(&trees.get(j + 1), Some(TokenTree::Punct(p)) if p.as_char() == ':');
                        match (colons, trees.get(j + 2)) {
                            (true, Some(TokenTree::Ident(next))) => {
                                segments.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    self.push(segments);
                    i = j;
                    continue;
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.depth += 1;
        syn::visit::visit_item_mod(self, m);
        self.depth -= 1;
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &u.tree);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }

    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {
        // Doc comments and attributes name modules in prose (intra-doc links), not imports.
    }
}

/// The module a path names: the longest prefix that is a file of `src/`.
fn target(
    modules: &BTreeSet<Module>,
    current: &Module,
    is_mod_file: bool,
    path: &[String],
) -> Option<Module> {
    let (base, rest): (Module, &[String]) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("self") => (current.clone(), &path[1..]),
        Some("super") => {
            // `super` of `a/b.rs` is `a`; of `a/mod.rs` (module `a`) it is the crate root.
            let mut base = current.clone();
            let _ = is_mod_file;
            base.pop();
            let mut rest = &path[1..];
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
            (base, rest)
        }
        _ => return None,
    };
    let mut best = None;
    let mut m = base;
    if modules.contains(&m) {
        best = Some(m.clone());
    }
    for seg in rest {
        m.push(seg.clone());
        if modules.contains(&m) {
            best = Some(m.clone());
        } else {
            break;
        }
    }
    best
}

/// Strongly connected components of more than one node (Tarjan).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit(t: &mut T, v: &str) {
        t.index.insert(v.to_string(), t.next);
        t.low.insert(v.to_string(), t.next);
        t.next += 1;
        t.stack.push(v.to_string());
        t.on.insert(v.to_string());
        let succ: Vec<String> = t
            .edges
            .get(v)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for w in succ {
            if !t.index.contains_key(&w) {
                visit(t, &w);
                let lw = t.low[&w];
                let lv = t.low[v];
                t.low.insert(v.to_string(), lv.min(lw));
            } else if t.on.contains(&w) {
                let iw = t.index[&w];
                let lv = t.low[v];
                t.low.insert(v.to_string(), lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(&w);
                let done = w == v;
                scc.push(w);
                if done {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    let nodes: Vec<String> = edges.keys().cloned().collect();
    for v in nodes {
        if !t.index.contains_key(&v) {
            visit(&mut t, &v);
        }
    }
    t.out
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// Module name -> the modules it imports.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// (file graph, folder graph, an example path per edge).
fn graph() -> (Graph, Graph, BTreeMap<(String, String), String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|f| f.file_name().is_some_and(|n| n != "main.rs"));
    let modules: BTreeSet<Module> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut file_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut folder_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut example = BTreeMap::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let mut paths = Paths::default();
        paths.visit_file(&ast);
        let me = module_of(&src, f);
        let is_mod = f.file_name().is_some_and(|n| n == "mod.rs");
        let children: BTreeSet<String> = modules
            .iter()
            .filter(|m| m.len() == me.len() + 1 && m.starts_with(&me))
            .filter_map(|m| m.last().cloned())
            .collect();
        file_edges.entry(name(&me)).or_default();
        for p in paths.resolved(&children) {
            let Some(to) = target(&modules, &me, is_mod, &p) else {
                continue;
            };
            if to == me || to.is_empty() {
                continue;
            }
            file_edges.entry(name(&me)).or_default().insert(name(&to));
            example
                .entry((name(&me), name(&to)))
                .or_insert_with(|| p.join("::"));
            let (a, b) = (me.first().cloned(), to.first().cloned());
            if let (Some(a), Some(b)) = (a, b)
                && a != b
            {
                folder_edges.entry(a.clone()).or_default().insert(b.clone());
                example
                    .entry((a, b))
                    .or_insert_with(|| format!("{} (in {})", p.join("::"), name(&me)));
            }
        }
    }
    (file_edges, folder_edges, example)
}

fn explain(
    kind: &str,
    found: &[Vec<String>],
    edges: &BTreeMap<String, BTreeSet<String>>,
    example: &BTreeMap<(String, String), String>,
) -> String {
    let mut out = format!("{} import cycle(s) among {kind}:\n", found.len());
    for scc in found {
        out.push_str(&format!("- {}\n", scc.join(", ")));
        for a in scc {
            for b in edges.get(a).into_iter().flatten() {
                if scc.contains(b) {
                    out.push_str(&format!(
                        "    {a} -> {b} ({})\n",
                        example
                            .get(&(a.clone(), b.clone()))
                            .map(String::as_str)
                            .unwrap_or("?")
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn no_file_of_src_imports_one_that_imports_it_back() {
    let (files, _, example) = graph();
    assert!(
        files.len() > 40,
        "the walk found too few modules: {files:?}"
    );
    let found = cycles(&files);
    assert!(
        found.is_empty(),
        "{}",
        explain("files", &found, &files, &example)
    );
}

#[test]
fn the_top_level_folders_of_src_import_each_other_one_way() {
    let (_, folders, example) = graph();
    let found = cycles(&folders);
    assert!(
        found.is_empty(),
        "{}",
        explain("folders", &found, &folders, &example)
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle_and_only_a_cycle() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let edge = |g: &mut BTreeMap<String, BTreeSet<String>>, a: &str, b: &str| {
        g.entry(a.into()).or_default().insert(b.into());
        g.entry(b.into()).or_default();
    };
    edge(&mut g, "a", "b");
    edge(&mut g, "b", "c");
    edge(&mut g, "a", "c");
    assert!(cycles(&g).is_empty());
    edge(&mut g, "c", "a");
    assert_eq!(
        cycles(&g),
        vec![vec!["a".to_string(), "b".into(), "c".into()]]
    );
}

#[test]
fn paths_in_code_uses_and_macros_are_edges_and_comments_are_not() {
    let text = r#"
        //! See [`crate::zzz`].
        use crate::a::{b::C, d};
        use crate::k;
        fn f() { let _ = crate::e::f(); tracing::info!("{}", crate::g::h()); k::m::n(); }
        // crate::comment::ignored
        mod tests { use super::*; fn t() { super::super::x(); } }
    "#;
    let ast = syn::parse_file(text).expect("parses");
    let mut p = Paths::default();
    p.visit_file(&ast);
    let found: BTreeSet<String> = p
        .resolved(&BTreeSet::new())
        .iter()
        .map(|s| s.join("::"))
        .collect();
    for want in [
        "crate::a::b::C",
        "crate::a::d",
        "crate::e::f",
        "crate::g::h",
        "crate::k::m::n",
        "self",
        "super::x",
    ] {
        assert!(found.contains(want), "{want} in {found:?}");
    }
    assert!(
        !found
            .iter()
            .any(|f| f.contains("zzz") || f.contains("comment")),
        "{found:?}"
    );
}
