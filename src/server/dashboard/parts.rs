//! Small pieces of markup several pages show: a status badge, alert labels, what started a run.

use std::collections::BTreeMap;

use maud::{Markup, html};

use crate::identity::claim;
use crate::run::cause::Cause;
use crate::server::dashboard::format::time;

/// A run or step status as a coloured badge (the class picks the colour).
pub fn status_badge(status: &str) -> Markup {
    html! { span class={ "status " (status) } { (status) } }
}

/// Alert labels as `name="value"` codes, space-separated.
pub fn label_codes(labels: &BTreeMap<String, String>) -> Markup {
    html! {
        @for (i, (k, v)) in labels.iter().enumerate() {
            @if i > 0 { " " }
            code { (k) "=\"" (v) "\"" }
        }
    }
}

/// What started a run, as the run page says it.
pub fn cause(cause: &Cause) -> Markup {
    html! {
        @match cause {
            Cause::Manual { user, claimed_user } => {
                "manual, by " (claim::shown(user, claimed_user.as_deref()))
            }
            Cause::Schedule { at } => { "schedule fire at " (time(*at)) }
            Cause::Alert { source, fingerprint, .. } => {
                "alert from " (source) " (fingerprint " code { (fingerprint) } ")"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_in_text_and_attributes() {
        let s = "<a href=\"x\">&'";
        assert_eq!(
            status_badge(s).into_string(),
            "<span class=\"status &lt;a href=&quot;x&quot;&gt;&amp;'\">&lt;a href=&quot;x&quot;&gt;&amp;'</span>"
        );
        let labels = BTreeMap::from([("a<".to_string(), "\"b\"".to_string())]);
        assert_eq!(
            label_codes(&labels).into_string(),
            "<code>a&lt;=&quot;&quot;b&quot;&quot;</code>"
        );
    }
}
