//! What a request says about who sends it: a body's `by` or `user`, the CLI's `$USER`. Anyone
//! can write any name there, so a claim is recorded beside the principal, never instead of it,
//! and shown as `alice (claimed: bob)`.

/// Longest claim accepted, in characters.
pub const MAX_CLAIM: usize = 100;

/// The claim in a request's `field` (`by`, `user`): None when absent or blank; refused when
/// longer than [`MAX_CLAIM`] or holding control characters (it is shown in logs and pages).
pub fn parse(field: &str, raw: Option<String>) -> Result<Option<String>, String> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = raw.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.chars().count() > MAX_CLAIM {
        return Err(format!(
            "`{field}` is longer than {MAX_CLAIM} characters; send a login name (it is recorded as a claim beside the authenticated identity)"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(format!(
            "`{field}` holds control characters; send a login name (it is recorded as a claim beside the authenticated identity)"
        ));
    }
    Ok(Some(text.to_string()))
}

/// A principal's name with the claim beside it when there is one: `alice` or
/// `alice (claimed: bob)`.
pub fn shown(name: &str, claimed: Option<&str>) -> String {
    match claimed {
        Some(c) if c != name => format!("{name} (claimed: {c})"),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_short_printable_names_or_nothing() {
        assert_eq!(parse("by", None), Ok(None));
        assert_eq!(parse("by", Some("  ".into())), Ok(None));
        assert_eq!(parse("by", Some(" bob ".into())), Ok(Some("bob".into())));
        assert!(parse("by", Some("x".repeat(MAX_CLAIM))).is_ok());
        let long = parse("user", Some("x".repeat(MAX_CLAIM + 1)));
        assert!(long.is_err_and(|e| e.starts_with("`user` is longer than 100")));
        assert!(parse("by", Some("bob\nINFO forged".into())).is_err());
    }

    #[test]
    fn a_claim_is_shown_beside_the_name_when_it_differs() {
        assert_eq!(shown("alice", None), "alice");
        assert_eq!(shown("alice", Some("alice")), "alice");
        assert_eq!(shown("alice", Some("bob")), "alice (claimed: bob)");
    }
}
