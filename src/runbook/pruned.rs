//! What the loader took out of a runbook file to read the rest of it: the nodes whose shape was
//! wrong (each reported once as a shape error). The validator checks what is left and asks
//! this record before reporting a problem that would only follow from a part taken out (a
//! "missing" field that was there with a wrong type, a step that "does nothing" because its
//! `run` was a mapping), so that no error is a cascade of one already reported.

use crate::runbook::source_map::{Seg, YamlPath};
use crate::runbook::suggest::did_you_mean;

/// One node taken out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cut {
    /// The node at this path (a mapping key and its value, or a list item emptied in place).
    Node(YamlPath),
    /// An item of the list at this path, removed (the items after it moved up).
    ItemOf(YamlPath),
}

/// The parts of one file taken out, by their paths in what is left.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    cuts: Vec<Cut>,
    /// The list items removed, each by its path when it was removed, in order.
    removed_items: Vec<YamlPath>,
    /// Fields of names the format does not have, taken out (`nmae`, `rn`).
    unknown_fields: Vec<YamlPath>,
}

impl Pruned {
    /// Records that the node at `path` was taken out; `removed_item` when it was a list item
    /// removed from its list (so the paths recorded before it, of later items, move up).
    pub fn record(&mut self, path: &[Seg], removed_item: bool) {
        match (removed_item, path.split_last()) {
            (true, Some((Seg::Index(i), parent))) => {
                // What was recorded of the item itself went with it.
                self.cuts
                    .retain(|c| !matches!(c, Cut::Node(p) if p.starts_with(path)));
                for cut in &mut self.cuts {
                    let p = match cut {
                        Cut::Node(p) | Cut::ItemOf(p) => p,
                    };
                    if p.len() > parent.len()
                        && p.starts_with(parent)
                        && let Some(Seg::Index(j)) = p.get(parent.len())
                        && j > i
                    {
                        p[parent.len()] = Seg::Index(j - 1);
                    }
                }
                self.cuts.push(Cut::ItemOf(parent.to_vec()));
                self.removed_items.push(path.to_vec());
            }
            _ => self.cuts.push(Cut::Node(path.to_vec())),
        }
    }

    /// The path in the file of what is at `path` now (list items after a removed one moved up).
    pub fn source_path(&self, path: &[Seg]) -> YamlPath {
        let mut out = path.to_vec();
        for removed in self.removed_items.iter().rev() {
            let Some((Seg::Index(i), parent)) = removed.split_last() else {
                continue;
            };
            if out.len() > parent.len()
                && out.starts_with(parent)
                && let Some(Seg::Index(j)) = out.get(parent.len())
                && j >= i
            {
                out[parent.len()] = Seg::Index(j + 1);
            }
        }
        out
    }

    /// Records that the unknown field at `path` was taken out.
    pub fn record_unknown_field(&mut self, path: &[Seg]) {
        self.record(path, false);
        self.unknown_fields.push(path.to_vec());
    }

    /// Whether the field at `path` is absent because it was misspelt: an unknown field beside
    /// it that "did you mean" takes for it (`nmae` for `name`) was taken out.
    pub fn misspelt(&self, path: &[Seg]) -> bool {
        let Some((Seg::Key(field), parent)) = path.split_last() else {
            return false;
        };
        self.unknown_fields.iter().any(|u| match u.split_last() {
            Some((Seg::Key(name), p)) if p == parent => {
                did_you_mean(name, [field.as_str()]).is_some()
            }
            _ => false,
        })
    }

    /// Whether nothing was taken out (the file's shape is right).
    pub fn is_empty(&self) -> bool {
        self.cuts.is_empty()
    }

    /// Whether the value at `path` was taken out: it or one of its ancestors.
    pub fn lost(&self, path: &[Seg]) -> bool {
        self.cuts
            .iter()
            .any(|c| matches!(c, Cut::Node(p) if path.starts_with(p)))
    }

    /// Whether the value at `path` is not whole: taken out, or something inside it was.
    pub fn touches(&self, path: &[Seg]) -> bool {
        self.lost(path)
            || self.cuts.iter().any(|c| match c {
                Cut::Node(p) | Cut::ItemOf(p) => p.starts_with(path),
            })
    }

    /// Whether something taken out lies at or under a path that `f` accepts (the path of a
    /// removed list item is its list's, followed by no index).
    pub fn any(&self, f: impl Fn(&[Seg]) -> bool) -> bool {
        self.cuts.iter().any(|c| match c {
            Cut::Node(p) | Cut::ItemOf(p) => f(p),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Seg {
        Seg::Key(s.to_string())
    }

    #[test]
    fn a_node_taken_out_is_lost_with_everything_under_it() {
        let mut p = Pruned::default();
        p.record(&[k("steps"), Seg::Index(1), k("run")], false);
        assert!(p.lost(&[k("steps"), Seg::Index(1), k("run")]));
        assert!(!p.lost(&[k("steps"), Seg::Index(1)]));
        assert!(p.touches(&[k("steps"), Seg::Index(1)]));
        assert!(p.touches(&[k("steps")]));
        assert!(!p.touches(&[k("steps"), Seg::Index(0)]));
        assert!(!p.touches(&[k("name")]));
    }

    #[test]
    fn a_misspelt_field_explains_the_absence_of_the_right_one() {
        let mut p = Pruned::default();
        p.record_unknown_field(&[k("steps"), Seg::Index(0), k("rn")]);
        assert!(p.misspelt(&[k("steps"), Seg::Index(0), k("run")]));
        assert!(!p.misspelt(&[k("steps"), Seg::Index(1), k("run")]));
        assert!(!p.misspelt(&[k("steps"), Seg::Index(0), k("plugin")]));
    }

    #[test]
    fn removing_a_list_item_moves_the_later_ones_up() {
        let mut p = Pruned::default();
        p.record(&[k("env"), Seg::Index(3), k("x")], false);
        p.record(&[k("env"), Seg::Index(1)], true);
        // The cut recorded at index 3 is now at index 2; the list itself lost an item.
        assert!(p.lost(&[k("env"), Seg::Index(2), k("x")]));
        assert!(!p.lost(&[k("env"), Seg::Index(1)]));
        assert!(p.touches(&[k("env")]));
        assert!(!p.lost(&[k("env")]));
        // What is at index 1 now stood at index 2 in the file.
        assert_eq!(
            p.source_path(&[k("env"), Seg::Index(1)]),
            [k("env"), Seg::Index(2)]
        );
        assert_eq!(
            p.source_path(&[k("env"), Seg::Index(0)]),
            [k("env"), Seg::Index(0)]
        );
    }
}
