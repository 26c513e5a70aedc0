//! Builds an HTTP step's URL from its template so that a value others control cannot change
//! where the request goes. The runbook's own text and trusted values (its `env`, secrets, a
//! parameter left at its default) may give the scheme, host and base path as they are. An
//! untrusted value (alert data, a caller's parameter, step output) is percent-encoded for where
//! it lands: in the path as one segment (it cannot add `/`, `?`, `#`, `@` or climb with `..`), in
//! the query or fragment as one component. The host (and port) may come only from a `hostname`
//! input, which was checked to be a host before the run started.

use handlebars::Context;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::exec::render::{Piece, RenderFailure, Renderer};
use crate::exec::taint::Taint;
use crate::runbook::template::Template;

/// Everything but the unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where in a URL the next character goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Before `://`.
    Scheme,
    /// Between `://` and the first `/`, `?` or `#`.
    Authority,
    /// The path.
    Path,
    /// After `?`.
    Query,
    /// After `#`.
    Fragment,
}

/// The part the text so far ends in.
fn part_after(url: &str) -> Part {
    let Some(scheme_end) = url.find("://") else {
        return Part::Scheme;
    };
    let rest = &url[scheme_end + 3..];
    if rest.contains('#') {
        Part::Fragment
    } else if rest.contains('?') {
        Part::Query
    } else if rest.contains('/') {
        Part::Path
    } else {
        Part::Authority
    }
}

/// Renders a URL template (see the module documentation).
pub fn url(
    renderer: &Renderer,
    t: &Template,
    ctx: &Context,
    taint: &Taint,
) -> Result<String, RenderFailure> {
    let mut out = String::new();
    for piece in renderer.plain_pieces(t, ctx, taint)? {
        match piece {
            Piece::Text(text) => out.push_str(&text),
            Piece::Value {
                value,
                source: None,
                ..
            } => out.push_str(&value),
            Piece::Value {
                value,
                source: Some(source),
                host,
                ..
            } => match part_after(&out) {
                Part::Scheme => {
                    return Err(RenderFailure(format!(
                        "{source} cannot give the scheme or host of a URL; only the runbook's own text, env and secrets can"
                    )));
                }
                Part::Authority if host => out.push_str(&value),
                Part::Authority => {
                    return Err(RenderFailure(format!(
                        "{source} cannot form the host of a URL; declare an input of type `hostname` (e.g. `inputs: {{ target: {{ label: instance, type: hostname }} }}`) and use `{{{{inputs.target.host}}}}`"
                    )));
                }
                Part::Path if value == "." || value == ".." => {
                    return Err(RenderFailure(format!(
                        "{source} is `{value}`, which would change the URL's path"
                    )));
                }
                Part::Path | Part::Query | Part::Fragment => {
                    out.extend(utf8_percent_encode(&value, COMPONENT));
                }
            },
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::render::context;

    fn render(template: &str, taint: &Taint) -> Result<String, String> {
        let ctx = context(serde_json::json!({
            "alert": {"labels": {
                "path": "/admin/delete?all=1",
                "host": "evil.example@127.0.0.1",
                "dotdot": "..",
                "q": "a b&c=d#e",
            }},
            "env": {"BASE": "https://alertmanager.example:9093/base"},
            "inputs": {"target": {"host": "db-1", "port": "9100", "value": "db-1:9100"}},
        }));
        let t = Template::compile(template).map_err(|e| e.message)?;
        url(&Renderer::new(), &t, &ctx, taint).map_err(|e| e.0)
    }

    #[test]
    fn untrusted_values_are_encoded_for_where_they_land_and_cannot_move_the_request() {
        let taint = Taint::strict().with_host_inputs(["target".to_string()]);
        assert_eq!(
            render("{{env.BASE}}/api/v2/silences/{{alert.labels.path}}", &taint),
            Ok("https://alertmanager.example:9093/base/api/v2/silences/%2Fadmin%2Fdelete%3Fall%3D1".into())
        );
        assert_eq!(
            render("http://127.0.0.1/search?q={{alert.labels.q}}", &taint),
            Ok("http://127.0.0.1/search?q=a%20b%26c%3Dd%23e".into())
        );
        assert_eq!(
            render(
                "http://{{inputs.target.host}}:{{inputs.target.port}}/metrics",
                &taint
            ),
            Ok("http://db-1:9100/metrics".into())
        );
        for (bad, says) in [
            (
                "http://{{alert.labels.host}}/x",
                "cannot form the host of a URL",
            ),
            ("{{alert.labels.path}}", "cannot give the scheme or host"),
            (
                "http://x/{{alert.labels.dotdot}}/admin",
                "would change the URL's path",
            ),
        ] {
            let e = render(bad, &taint).err().unwrap_or_default();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
