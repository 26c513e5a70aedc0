//! Where each value of a YAML document stands in its source text.
//!
//! serde_yaml reports positions only for syntax and type errors. For semantic errors the
//! validator needs to point at the exact key or value, so this module walks the same text with
//! yaml-rust2's event parser (which keeps positions) and records a span for every path. It also
//! finds duplicate keys, which YAML forbids and which would otherwise silently shadow each other.

use std::collections::HashMap;
use std::ops::Range;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One step of a path into a YAML document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A path into a YAML document, e.g. `steps[2].run`.
pub type YamlPath = Vec<Seg>;

/// Renders a path the way users write it: `steps[2].run`.
pub fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Spans of one node.
#[derive(Debug, Clone, Default)]
pub struct NodeSpans {
    /// The key that introduced this node (empty for sequence items and the root).
    pub key: Option<Range<usize>>,
    /// The value itself (for collections, just their first character or `- `).
    pub value: Range<usize>,
}

/// A key that appears twice in one mapping.
#[derive(Debug, Clone)]
pub struct DuplicateKey {
    /// Path of the mapping holding it.
    pub mapping: YamlPath,
    /// The key text.
    pub key: String,
    /// The first occurrence.
    pub first: Range<usize>,
    /// The repeated occurrence.
    pub second: Range<usize>,
}

/// Path -> position index of one YAML document.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    nodes: HashMap<YamlPath, NodeSpans>,
    /// Duplicate keys found while indexing.
    pub duplicates: Vec<DuplicateKey>,
}

impl SourceMap {
    /// Indexes `text`; a document yaml-rust2 cannot read yields an empty map (serde_yaml reports
    /// the syntax error itself).
    pub fn build(text: &str) -> SourceMap {
        let mut builder = Builder {
            text,
            line_starts: line_starts(text),
            map: SourceMap::default(),
            stack: Vec::new(),
            gave_up: false,
            complex_key: None,
            cursor: (usize::MAX, 0, 0),
            path: Vec::new(),
            documents: 0,
        };
        // Drive the parser event by event: `Parser::load` recurses once per nesting level and
        // overflows the stack on deeply nested input; this loop and the builder's own stack do not.
        let mut parser = Parser::new_from_str(text);
        loop {
            match parser.next_token() {
                Ok((Event::StreamEnd, _)) => break,
                Ok((ev, mark)) => builder.on_event(ev, mark),
                Err(_) => return SourceMap::default(),
            }
        }
        builder.map
    }

    /// Spans of the node at `path`, if it exists in the source.
    pub fn get(&self, path: &[Seg]) -> Option<&NodeSpans> {
        self.nodes.get(path)
    }

    /// The span of the value at `path`, or of its closest existing ancestor.
    pub fn value_span(&self, path: &[Seg]) -> Range<usize> {
        self.nearest(path).map(|n| n.value.clone()).unwrap_or(0..0)
    }

    /// The span of the key introducing `path` (falls back to the value, then the ancestors).
    pub fn key_span(&self, path: &[Seg]) -> Range<usize> {
        self.nearest(path)
            .map(|n| n.key.clone().unwrap_or_else(|| n.value.clone()))
            .unwrap_or(0..0)
    }

    /// The span to underline for a whole node: its key when it has one, else its value.
    pub fn node_span(&self, path: &[Seg]) -> Range<usize> {
        self.key_span(path)
    }

    /// Forgets the node at `path` as the loader takes it out: with what is under it, or (when
    /// `keep_node`, a list item emptied in place) only what is under it. When a list item is
    /// removed, the items after it move up, so that paths keep naming what is left.
    pub fn forget(&mut self, path: &[Seg], keep_node: bool) {
        self.nodes
            .retain(|p, _| !(p.starts_with(path) && (p.len() > path.len() || !keep_node)));
        if keep_node {
            return;
        }
        let Some((Seg::Index(i), parent)) = path.split_last() else {
            return;
        };
        // Ascending, so that each moves into a place already vacated.
        let mut moved: Vec<YamlPath> = self
            .nodes
            .keys()
            .filter(|p| {
                p.len() > parent.len()
                    && p.starts_with(parent)
                    && matches!(p.get(parent.len()), Some(Seg::Index(j)) if j > i)
            })
            .cloned()
            .collect();
        moved.sort();
        for old in moved {
            if let Some(spans) = self.nodes.remove(&old) {
                let mut new = old;
                if let Some(Seg::Index(j)) = new.get(parent.len()).cloned() {
                    new[parent.len()] = Seg::Index(j - 1);
                }
                self.nodes.insert(new, spans);
            }
        }
    }

    fn nearest(&self, path: &[Seg]) -> Option<&NodeSpans> {
        (0..=path.len())
            .rev()
            .find_map(|len| self.nodes.get(&path[..len]))
    }
}

/// Nesting depth beyond which no positions are indexed.
const MAX_DEPTH: usize = 256;

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

enum Frame {
    Mapping {
        /// The key read, waiting for its value.
        pending_key: Option<(String, Range<usize>)>,
        seen: HashMap<String, Range<usize>>,
    },
    Sequence {
        next: usize,
    },
}

struct Level {
    frame: Frame,
    /// Written in flow style (`{...}` or `[...]`).
    flow: bool,
}

struct Builder<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    map: SourceMap,
    stack: Vec<Level>,
    /// Set on input too deep to index; indexing stops there.
    gave_up: bool,
    /// Inside a collection used as a mapping key (`{{x}}: y`, or the inner braces of an
    /// unquoted `run: {{x}}`): its depth, and where it started. Such a key is recorded with its
    /// source text, so that the nodes after it keep their positions.
    complex_key: Option<(usize, usize)>,
    /// Last converted position: (line, byte offset, column), to convert the next one from it.
    cursor: (usize, usize, usize),
    path: YamlPath,
    documents: usize,
}

impl Builder<'_> {
    /// Byte offset of a marker, computed from line and column so that multi-byte characters
    /// do not shift carets.
    fn offset(&mut self, mark: &Marker) -> usize {
        let line = mark.line().max(1) - 1;
        let Some(&start) = self.line_starts.get(line) else {
            return self.text.len();
        };
        // Events come in source order: walk forward from the last position on the same line
        // instead of from the line start, so long lines stay linear.
        let (mut byte, mut col) = match self.cursor {
            (l, b, c) if l == line && c <= mark.col() => (b, c),
            _ => (start, 0),
        };
        let rest = &self.text[byte..];
        for (i, ch) in rest.char_indices() {
            if col == mark.col() {
                byte += i;
                self.cursor = (line, byte, col);
                return byte;
            }
            if ch == '\n' {
                return byte + i;
            }
            col += 1;
        }
        self.text.len()
    }

    /// Where a scalar starting at `start` ends in the source.
    fn scalar_end(&self, start: usize, style: TScalarStyle, is_key: bool) -> usize {
        // Spans only need the start of a long line: bound the look-ahead so that a file with one
        // huge line is not scanned once per value.
        let mut limit = (start + 8192).min(self.text.len());
        while !self.text.is_char_boundary(limit) {
            limit -= 1;
        }
        let rest = &self.text[start..limit];
        let line_end = rest.find('\n').unwrap_or(rest.len());
        let line = &rest[..line_end];
        let len = match style {
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
                let quote = if style == TScalarStyle::SingleQuoted {
                    '\''
                } else {
                    '"'
                };
                let mut escaped = false;
                let mut end = line.len();
                for (i, c) in line.char_indices().skip(1) {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' && quote == '"' {
                        escaped = true;
                    } else if c == quote {
                        end = i + 1;
                        break;
                    }
                }
                end
            }
            TScalarStyle::Plain => {
                let mut end = line.len();
                if let Some(i) = line.find(" #") {
                    end = end.min(i);
                }
                if self.in_flow()
                    && let Some(i) = line.find([',', ']', '}'])
                {
                    end = end.min(i);
                }
                // A plain key ends at its colon.
                if is_key
                    && let Some(i) = line
                        .find(": ")
                        .or_else(|| line.strip_suffix(':').map(str::len))
                {
                    end = end.min(i);
                }
                line[..end].trim_end().len()
            }
            TScalarStyle::Literal | TScalarStyle::Folded => line.trim_end().len(),
        };
        start + len.max(1).min(rest.len())
    }
}

impl Builder<'_> {
    fn in_flow(&self) -> bool {
        self.stack.iter().any(|l| l.flow)
    }

    /// Enters the child position for the next node; returns true when the node is a mapping key.
    fn begin_node(&mut self) -> bool {
        match self.stack.last_mut().map(|l| &mut l.frame) {
            Some(Frame::Mapping { pending_key, .. }) => match pending_key {
                Some((key, _)) => {
                    self.path.push(Seg::Key(key.clone()));
                    false
                }
                None => true,
            },
            Some(Frame::Sequence { next }) => {
                self.path.push(Seg::Index(*next));
                *next += 1;
                false
            }
            None => false,
        }
    }

    /// Leaves the child position after a complete value.
    fn end_node(&mut self) {
        match self.stack.last_mut().map(|l| &mut l.frame) {
            Some(Frame::Mapping { pending_key, .. }) => {
                *pending_key = None;
                self.path.pop();
            }
            Some(Frame::Sequence { .. }) => {
                self.path.pop();
            }
            None => {}
        }
    }

    fn insert(&mut self, value: Range<usize>) {
        let key = match self.stack.last().map(|l| &l.frame) {
            Some(Frame::Mapping {
                pending_key: Some((_, span)),
                ..
            }) => Some(span.clone()),
            _ => None,
        };
        self.map
            .nodes
            .insert(self.path.clone(), NodeSpans { key, value });
    }

    fn key(&mut self, key: String, span: Range<usize>) {
        let mapping = self.path.clone();
        if let Some(Level {
            frame: Frame::Mapping { pending_key, seen },
            ..
        }) = self.stack.last_mut()
        {
            if seen.is_empty()
                && let Some(node) = self.map.nodes.get_mut(&mapping)
                && self.text.as_bytes().get(node.value.start) != Some(&b'{')
            {
                // A block mapping's marker sits after its first key; start it at that key.
                node.value = span.clone();
            }
            if let Some(first) = seen.get(&key) {
                self.map.duplicates.push(DuplicateKey {
                    mapping,
                    key: key.clone(),
                    first: first.clone(),
                    second: span.clone(),
                });
            } else {
                seen.insert(key.clone(), span.clone());
            }
            *pending_key = Some((key, span));
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.gave_up {
            return;
        }
        let start = self.offset(&mark);
        if let Some((depth, key_start)) = self.complex_key {
            match ev {
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    self.complex_key = Some((depth + 1, key_start));
                }
                Event::MappingEnd | Event::SequenceEnd if depth <= 1 => {
                    self.complex_key = None;
                    let end = (start + 1).min(self.text.len()).max(key_start);
                    let text = self.text.get(key_start..end).unwrap_or("").to_string();
                    self.key(text, key_start..end);
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    self.complex_key = Some((depth - 1, key_start));
                }
                _ => {}
            }
            return;
        }
        match ev {
            Event::DocumentStart => self.documents += 1,
            // Only the first document matters: a runbook file holds one.
            _ if self.documents > 1 => {}
            Event::Scalar(value, style, _, _) => {
                let is_key = self.begin_node();
                let end = self.scalar_end(start, style, is_key);
                if is_key {
                    self.key(value, start..end);
                } else {
                    self.insert(start..end);
                    self.end_node();
                }
            }
            Event::Alias(_) => {
                if self.begin_node() {
                    // An alias as a key: recorded by its source text (`*name`).
                    let rest = self.text.get(start..).unwrap_or("");
                    let len = rest
                        .find(|c: char| c.is_whitespace() || c == ':' || c == ',')
                        .unwrap_or(rest.len())
                        .max(1);
                    let end = (start + len).min(self.text.len());
                    let text = self.text.get(start..end).unwrap_or("").to_string();
                    self.key(text, start..end);
                } else {
                    self.insert(start..start + 1);
                    self.end_node();
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // serde_yaml refuses nesting past 128 levels anyway; indexing deeper would only
                // cost time (paths are cloned per node).
                if self.stack.len() >= MAX_DEPTH {
                    self.gave_up = true;
                    return;
                }
                if self.begin_node() {
                    self.complex_key = Some((1, start));
                    return;
                }
                self.insert(start..start + 1);
                let flow = matches!(self.text.as_bytes().get(start), Some(b'{' | b'['));
                let frame = if matches!(ev, Event::MappingStart(..)) {
                    Frame::Mapping {
                        pending_key: None,
                        seen: HashMap::new(),
                    }
                } else {
                    Frame::Sequence { next: 0 }
                };
                self.stack.push(Level { frame, flow });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.end_node();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Seg {
        Seg::Key(s.to_string())
    }

    fn at<'a>(text: &'a str, span: &Range<usize>) -> &'a str {
        &text[span.clone()]
    }

    #[test]
    fn spans_point_at_keys_and_values_in_block_style() {
        let text = "name: disk-cleanup\nsteps:\n  - name: usage\n    run: \"df -h\"  # c\n";
        let map = SourceMap::build(text);
        assert_eq!(at(text, &map.value_span(&[k("name")])), "disk-cleanup");
        assert_eq!(at(text, &map.key_span(&[k("name")])), "name");
        let run = vec![k("steps"), Seg::Index(0), k("run")];
        assert_eq!(at(text, &map.value_span(&run)), "\"df -h\"");
        assert_eq!(at(text, &map.key_span(&run)), "run");
        let step_name = vec![k("steps"), Seg::Index(0), k("name")];
        assert_eq!(at(text, &map.value_span(&step_name)), "usage");
    }

    #[test]
    fn spans_in_flow_style_stop_at_separators() {
        let text = "tags: [disk, linux]\nmax: { count: 3, per: 1h }\n";
        let map = SourceMap::build(text);
        assert_eq!(
            at(text, &map.value_span(&[k("tags"), Seg::Index(1)])),
            "linux"
        );
        assert_eq!(at(text, &map.value_span(&[k("max"), k("per")])), "1h");
        assert_eq!(at(text, &map.key_span(&[k("max"), k("count")])), "count");
    }

    #[test]
    fn spans_count_bytes_after_multibyte_characters() {
        let text = "description: \"größe\"\nname: x\n";
        let map = SourceMap::build(text);
        assert_eq!(at(text, &map.value_span(&[k("description")])), "\"größe\"");
        let text = "a: ü\nb: [é, x]\n";
        let map = SourceMap::build(text);
        assert_eq!(at(text, &map.value_span(&[k("b"), Seg::Index(1)])), "x");
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_ancestor() {
        let text = "guards:\n  cooldown: 5m\n";
        let map = SourceMap::build(text);
        let span = map.key_span(&[k("guards"), k("nosuch")]);
        assert_eq!(at(text, &span), "guards");
    }

    #[test]
    fn duplicate_keys_are_found_with_both_positions() {
        let text = "name: a\nowner: x\nname: b\n";
        let map = SourceMap::build(text);
        assert_eq!(map.duplicates.len(), 1);
        let d = &map.duplicates[0];
        assert_eq!(d.key, "name");
        assert_eq!(d.first, 0..4);
        assert_eq!(d.second, 17..21);
    }

    #[test]
    fn nodes_after_an_unquoted_template_keep_their_positions() {
        // `{{x}}` unquoted is a flow mapping whose key is another mapping.
        let text = "steps:\n  - name: a\n    run: {{params.x}}\n    timeuot: 5s\n  - name: b\n    retries: 3\n";
        let map = SourceMap::build(text);
        let step = |i: usize, f: &str| vec![k("steps"), Seg::Index(i), k(f)];
        assert_eq!(at(text, &map.key_span(&step(0, "timeuot"))), "timeuot");
        assert_eq!(at(text, &map.value_span(&step(1, "retries"))), "3");
        assert_eq!(at(text, &map.value_span(&step(0, "run"))), "{");
        let key = [k("steps"), Seg::Index(0), k("run"), k("{params.x}")];
        assert_eq!(at(text, &map.key_span(&key)), "{params.x}");
    }

    #[test]
    fn forgetting_a_list_item_moves_the_later_ones_up() {
        let text = "env: [A, {x: 1}, C]\nsteps:\n  - name: a\n";
        let mut map = SourceMap::build(text);
        map.forget(&[k("env"), Seg::Index(1)], false);
        assert_eq!(at(text, &map.value_span(&[k("env"), Seg::Index(1)])), "C");
        assert!(map.get(&[k("env"), Seg::Index(2)]).is_none());
        let step = [k("steps"), Seg::Index(0)];
        map.forget(&step, true);
        assert!(map.get(&step).is_some());
        assert!(map.get(&[k("steps"), Seg::Index(0), k("name")]).is_none());
    }

    #[test]
    fn paths_display_as_users_write_them() {
        assert_eq!(
            display_path(&[k("steps"), Seg::Index(2), k("run")]),
            "steps[2].run"
        );
    }
}
