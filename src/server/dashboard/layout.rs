//! The frame of every page: head, navigation with the approvals badge, the stamp the refresh
//! script compares, the script itself; and the error page.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::engine::Engine;
use crate::store::error::StoreError;

/// The pages of the navigation: (href, key, label).
const NAV: [(&str, &str, &str); 5] = [
    ("/", "overview", "Overview"),
    ("/ui/backlog", "backlog", "Automation backlog"),
    ("/ui/runbooks", "runbooks", "Runbooks"),
    ("/ui/runs", "runs", "Runs"),
    ("/ui/approvals", "approvals", "Approvals"),
];

/// A whole page: `active` is the navigation key of the page, `pending` the runs waiting for
/// approval (shown in the navigation), `stamp` the signature taken before `body` was read.
pub fn frame(stamp: &str, active: &str, title: &str, pending: usize, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · untoil" }
                link rel="stylesheet" href="/ui/assets/app.css";
            }
            body data-stamp=(stamp) data-page=(active) {
                header {
                    span class="brand" { "untoil" }
                    nav {
                        @for (href, key, label) in NAV {
                            a href=(href) id={ "nav-" (key) }
                                class=[(key == active).then_some("active")] {
                                (label)
                                @if key == "approvals" && pending > 0 { " (" (pending) ")" }
                            }
                        }
                    }
                }
                main { (body) }
                script src="/ui/assets/app.js" {}
            }
        }
    }
}

/// An HTML answer (never cached or framed, scripts and styles from this site only: the
/// router's [`headers`](crate::server::headers) layer says so on every HTML answer).
pub fn respond(status: StatusCode, html: Markup) -> Response {
    (status, Html(html.into_string())).into_response()
}

/// A page in its frame; the navigation counts the runs waiting for approval without rendering
/// their plans.
pub fn page(engine: &Engine, stamp: &str, active: &str, title: &str, body: Markup) -> Response {
    let pending = engine.approvals.count();
    respond(StatusCode::OK, frame(stamp, active, title, pending, body))
}

/// The error page: the status and what went wrong, with links back.
pub fn error_body(status: StatusCode, message: &str) -> Markup {
    html! {
        (DOCTYPE)
        html {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (status) }
                link rel="stylesheet" href="/ui/assets/app.css";
            }
            body {
                main {
                    h1 { (status) }
                    p class="error" id="error" { (message) }
                    p {
                        a href="/" { "Overview" } " · "
                        a href="/ui/approvals" { "Approvals" } " · "
                        a href="/ui/runbooks" { "Runbooks" }
                    }
                }
            }
        }
    }
}

/// [`error_body`] as an answer with that status.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    respond(status, error_body(status, message))
}

/// A store failure: 503 (a reload may work), logged.
pub fn store_failure(e: StoreError) -> Response {
    tracing::error!("store error: {e}");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("store unavailable: {e}"),
    )
}
