//! Plain aligned-column tables for terminal output (`list`, reports), on comfy-table.

use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, presets};

use crate::report::cell;

/// A table with a header row and aligned columns, no borders.
pub struct Table {
    inner: comfy_table::Table,
    right: Vec<usize>,
}

impl Table {
    /// A table with these column headers.
    pub fn new<I, S>(header: I) -> Table
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut inner = comfy_table::Table::new();
        inner
            .load_preset(presets::NOTHING)
            .set_content_arrangement(ContentArrangement::Disabled)
            .set_header(
                header
                    .into_iter()
                    .map(|h| cell::terminal(&h.into()))
                    .collect::<Vec<String>>(),
            );
        Table {
            inner,
            right: Vec::new(),
        }
    }

    /// Right-aligns column `index` (numbers).
    pub fn align_right(&mut self, index: usize) {
        self.right.push(index);
    }

    /// Adds a row; control characters in its cells are shown escaped.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner.add_row(
            cells
                .into_iter()
                .map(|c| cell::terminal(&c.into()))
                .collect::<Vec<String>>(),
        );
    }

    /// Renders the table, one line per row, trailing spaces trimmed.
    pub fn render(&mut self) -> String {
        for &i in &self.right {
            if let Some(col) = self.inner.column_mut(i) {
                col.set_cell_alignment(CellAlignment::Right);
            }
        }
        // comfy-table pads each cell with one space on both sides; drop the outer ones.
        for col in self.inner.column_iter_mut() {
            col.set_padding((0, 2));
            col.set_constraint(ColumnConstraint::ContentWidth);
        }
        let mut out = String::new();
        for line in self.inner.lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A ratio as a percentage with one decimal, `-` when there is none.
pub fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |r| format!("{:.1}%", r * 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_and_numbers_right_aligned() {
        let mut t = Table::new(["NAME", "MIN"]);
        t.align_right(1);
        t.row(["a", "5"]);
        t.row(["longer-name", "120"]);
        assert_eq!(
            t.render(),
            "NAME         MIN\na              5\nlonger-name  120\n"
        );
    }

    #[test]
    fn control_characters_in_cells_are_shown_escaped() {
        let mut t = Table::new(["NAME"]);
        t.row(["a\x1b[2J\rb"]);
        assert_eq!(t.render(), "NAME\na\\u{1b}[2J\\rb\n");
    }
}
