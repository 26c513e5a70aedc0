//! Report cells made safe for where they end up: a CSV cell that a spreadsheet would read as a
//! formula is prefixed with `'`, a Markdown table cell has its `|`, backslashes, HTML special
//! characters and line breaks escaped, and a terminal table cell its control characters, so
//! that alert labels and runbook fields are shown as the text they are.

/// A CSV cell a spreadsheet shows as text: one starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return gets a leading `'`.
pub fn csv(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

/// A Markdown table cell: `\` and `|` backslash-escaped, `&`, `<`, `>`, `"` and `'` as HTML
/// entities, and line breaks and other control characters as spaces.
pub fn markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A terminal table cell: control characters (escape sequences, carriage returns, line breaks)
/// written as escapes such as `\u{1b}`.
pub fn terminal(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A line of text for a terminal (a step's output, an error): control characters escaped as in
/// [`terminal`], but a tab stays a tab. Split text into lines first: a line break is escaped.
pub fn terminal_line(text: &str) -> String {
    if !text.chars().any(|c| c.is_control() && c != '\t') {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formulas_and_markup_are_neutralised() {
        for (text, want) in [
            ("=1+1", "'=1+1"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("team-db", "team-db"),
            ("", ""),
        ] {
            assert_eq!(csv(text), want);
        }
        assert_eq!(terminal("a\x1b[2J\rb"), "a\\u{1b}[2J\\rb");
        assert_eq!(terminal_line("a\x1b[2J\rb\tc"), "a\\u{1b}[2J\\rb\tc");
        assert_eq!(
            markdown("a|b\\|c <i>&\"'\r\n"),
            "a\\|b\\\\\\|c &lt;i&gt;&amp;&quot;&#39;  "
        );
    }

    /// How many cell separators GitHub's table splitting sees in `row`.
    fn separators(row: &str) -> usize {
        let (mut n, mut escaped) = (0, false);
        for c in row.chars() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '|') => n += 1,
                _ => {}
            }
        }
        n
    }

    proptest! {
        #[test]
        fn no_cell_starts_a_formula_or_splits_a_row(text in "\\PC{0,12}|[=+@\\-\\t\\r|\\\\<>&\\n]{1,6}.{0,6}") {
            prop_assert!(!csv(&text).starts_with(['=', '+', '-', '@', '\t', '\r']));
            let cell = markdown(&text);
            prop_assert_eq!(separators(&format!("| {cell} |")), 2);
            prop_assert!(!cell.contains(['<', '>', '\n', '\r']));
        }
    }
}
