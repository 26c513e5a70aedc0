//! What a principal's scope lets it do, decided from the request line alone before any handler
//! runs: `full` anything, `read` only `GET` and `HEAD` (API, dashboard, metrics), `alerts` only
//! `POST`s to the Alertmanager and Grafana receivers (and unsigned defined sources) (the health checks need no credentials at all).

use axum::http::Method;

use crate::identity::principal::Principal;
use crate::identity::scope::Scope;
use crate::server::alerts;

/// What a request does, as scopes see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// `GET` or `HEAD`: changes nothing.
    Read,
    /// A `POST` to the Alertmanager or Grafana receiver.
    PostAlerts,
    /// Anything else: approve, deny, run, cancel, reset...
    Act,
}

fn access(method: &Method, path: &str) -> Access {
    if matches!(*method, Method::GET | Method::HEAD) {
        Access::Read
    } else if *method == Method::POST && (path == alerts::PATH || path == alerts::GRAFANA_PATH) {
        Access::PostAlerts
    } else {
        Access::Act
    }
}

fn permits(scope: Scope, access: Access) -> bool {
    match scope {
        Scope::Full => true,
        Scope::Read => access == Access::Read,
        Scope::Alerts => access == Access::PostAlerts,
    }
}

/// Ok when `p` may make this request; else why not, naming the principal, its scope and the
/// scope the request needs (the answer of a 403).
pub fn check(p: &Principal, method: &Method, path: &str) -> Result<(), String> {
    let access = access(method, path);
    if permits(p.scope, access) {
        return Ok(());
    }
    let needs = match access {
        Access::Read => "`read` or `full`",
        Access::PostAlerts => "`alerts` or `full`",
        Access::Act => "`full`",
    };
    let shown: String = path.chars().take(200).collect();
    Err(format!(
        "{} has scope `{}`, which allows {}; {method} {shown} needs scope {needs} (see the auth file's `scope:`)",
        p.describe(),
        p.scope,
        p.scope.allows(),
    ))
}

/// For a defined source without a signature (grafana kind): the request must carry credentials
/// of scope `alerts` or `full`, as the built-in receivers do. None when they do; else the
/// 401/403 answer.
pub fn alerts_refusal(
    s: &crate::server::state::Shared,
    headers: &axum::http::HeaderMap,
) -> Option<axum::response::Response> {
    use axum::http::StatusCode;
    let Some(p) = s.auth.identify(headers) else {
        return Some(crate::server::respond::error(
            StatusCode::UNAUTHORIZED,
            "missing or invalid credentials: this source has no `verify:`, so it needs `Authorization: Bearer <token>` of scope `alerts`",
        ));
    };
    if permits(p.scope, Access::PostAlerts) {
        None
    } else {
        Some(crate::server::respond::error(
            StatusCode::FORBIDDEN,
            format!(
                "{} has scope `{}`; posting to a source needs scope `alerts` or `full`",
                p.describe(),
                p.scope
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(scope: Scope) -> Principal {
        Principal::token("t", vec![], scope)
    }

    /// One request of each kind: reads of the API, the dashboard and the metrics; the alert
    /// receiver; the API's and the dashboard's actions.
    const READS: [(&str, &str); 5] = [
        ("GET", "/api/v1/runs"),
        ("HEAD", "/api/v1/runs/x"),
        ("GET", "/"),
        ("GET", "/ui/approvals"),
        ("GET", "/metrics"),
    ];
    const ALERTS: [(&str, &str); 1] = [("POST", "/api/v1/alerts/alertmanager")];
    const ACTS: [(&str, &str); 9] = [
        ("POST", "/api/v1/runs/x/approve"),
        ("POST", "/api/v1/runs/x/deny"),
        ("POST", "/api/v1/runs/x/cancel"),
        ("POST", "/api/v1/runbooks/g/runs"),
        ("POST", "/api/v1/breakers/g/reset"),
        ("POST", "/ui/runs/x/approve"),
        ("POST", "/ui/breakers/g/reset"),
        ("PUT", "/api/v1/alerts/alertmanager"),
        ("POST", "/api/v1/alerts/alertmanager/../../runs/x/approve"),
    ];

    fn allowed(scope: Scope, (method, path): (&str, &str)) -> bool {
        let method: Method = method.parse().expect("method");
        check(&token(scope), &method, path).is_ok()
    }

    #[test]
    fn each_scope_allows_exactly_its_kinds_of_request() {
        // (scope, whether it may read, post alerts, act)
        for (scope, allows) in [
            (Scope::Full, [true, true, true]),
            (Scope::Read, [true, false, false]),
            (Scope::Alerts, [false, true, false]),
        ] {
            for (kind, requests) in [&READS[..], &ALERTS, &ACTS].into_iter().enumerate() {
                for r in requests {
                    assert_eq!(allowed(scope, *r), allows[kind], "{scope} {r:?}");
                }
            }
        }
    }

    #[test]
    fn a_refusal_names_the_principal_its_scope_and_what_is_needed() {
        let grafana = Principal::token("grafana", vec![], Scope::Read);
        let e = check(&grafana, &Method::POST, "/api/v1/runs/x/approve")
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("token `grafana` has scope `read`"), "{e}");
        assert!(
            e.contains("POST /api/v1/runs/x/approve needs scope `full`"),
            "{e}"
        );
        let am = Principal::user("am", vec![], Scope::Alerts);
        let e = check(&am, &Method::GET, "/api/v1/runs")
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("user `am` has scope `alerts`"), "{e}");
        assert!(e.contains("needs scope `read` or `full`"), "{e}");
    }
}
