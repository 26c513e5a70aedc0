//! "Did you mean ...": the closest name to a misspelt one.

/// The closest candidate to a misspelt `word`, for "did you mean `x`?".
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| !c.is_empty() && *c != word)
        .map(|c| (strsim::damerau_levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.chars().count().max(word.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("did you mean `{c}`?"))
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
}
