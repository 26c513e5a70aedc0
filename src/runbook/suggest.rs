//! "Did you mean ...": the closest name to a misspelt one.

/// The closest candidate to a misspelt `word`, for "did you mean `x`?".
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = word.to_lowercase();
    let candidates: Vec<&str> = candidates
        .into_iter()
        .filter(|c| !c.is_empty() && *c != word)
        .collect();
    let close = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.chars().count().max(word.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    // Another form of the same word (`fired` for `firing`) is further apart than a typo.
    let same_stem = || {
        let stem = stem(&lower);
        candidates
            .iter()
            .find(|c| stem.chars().count() >= 3 && self::stem(&c.to_lowercase()) == stem)
            .copied()
    };
    close
        .or_else(same_stem)
        .map(|c| format!("did you mean `{c}`?"))
}

/// A word without its English inflection (`firing`, `fired` and `fires` are `fir`).
fn stem(word: &str) -> &str {
    ["ing", "ed", "es", "e", "s", "d"]
        .iter()
        .find_map(|suffix| word.strip_suffix(suffix))
        .unwrap_or(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_close_names_only() {
        let fields = ["name", "owner", "service", "steps"];
        assert_eq!(
            did_you_mean("nmae", fields),
            Some("did you mean `name`?".into())
        );
        assert_eq!(
            did_you_mean("ownr", fields),
            Some("did you mean `owner`?".into())
        );
        assert_eq!(did_you_mean("zzzzzz", fields), None);
    }

    #[test]
    fn did_you_mean_finds_other_forms_of_a_word() {
        let on = ["firing", "resolved", "both"];
        assert_eq!(
            did_you_mean("fired", on),
            Some("did you mean `firing`?".into())
        );
        assert_eq!(
            did_you_mean("resolving", on),
            Some("did you mean `resolved`?".into())
        );
        assert_eq!(
            did_you_mean("Fires", on),
            Some("did you mean `firing`?".into())
        );
        // Stems shorter than three letters say nothing.
        assert_eq!(did_you_mean("bed", ["being"]), None);
    }
}
