//! Decoding `application/x-www-form-urlencoded` pairs: form POST bodies and page query strings.

use std::collections::BTreeMap;

/// Decodes urlencoded pairs (with the url crates' own parser); a repeated key keeps its last
/// value.
pub fn pairs(body: &[u8]) -> BTreeMap<String, String> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The pairs of a page's query string (none without one).
pub fn query(q: Option<String>) -> BTreeMap<String, String> {
    pairs(q.unwrap_or_default().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_percent_and_plus() {
        let f = pairs(b"csrf=ab%2Fc&key=a+b&empty=&x");
        assert_eq!(f["csrf"], "ab/c");
        assert_eq!(f["key"], "a b");
        assert_eq!(f["empty"], "");
        assert_eq!(f["x"], "");
        assert_eq!(pairs(b"k=%")["k"], "%");
        assert_eq!(pairs(b"k=%4")["k"], "%4");
    }
}
