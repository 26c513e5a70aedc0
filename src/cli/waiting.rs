//! What `untoil run` says about a run that waits for a person: that it waits, how to approve or
//! deny it (the command and the dashboard page), when it expires; and, once decided, who did.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cli::logging::escape;
use crate::identity::claim;
use crate::report::human;
use crate::run::record::RunRecord;

/// The notice for run `id`, from its entry in `GET /api/v1/approvals`; `base` is the daemon's
/// address and `server` the `--server` this command was given (repeated in the commands).
pub fn notice(
    id: &str,
    item: &Value,
    base: &str,
    server: Option<&str>,
    now: DateTime<Utc>,
) -> String {
    let server = server_flag(server);
    let expires = item["expires_at"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    let expiry = match expires {
        Some(at) => {
            let left = (at - now).to_std().unwrap_or_default();
            // Whole seconds: the notice is for a person.
            let left = std::time::Duration::from_secs(left.as_secs());
            format!(
                "; it expires at {} (in {}), and then does not run",
                human::instant(at),
                human::duration(left)
            )
        }
        None => String::new(),
    };
    let runbook = item["run"]["runbook"].as_str().unwrap_or("the runbook");
    let mut out = format!(
        "run {id} waits for approval ({} requires it){expiry}\n",
        escape(runbook)
    );
    if let Some(who) = approvers(&item["approvers"]) {
        out.push_str(&format!("  it may be decided by {who}\n"));
    }
    out.push_str(&format!(
        "  approve it: untoil approve {id}{server}   (or deny it: untoil deny {id}{server})\n"
    ));
    out.push_str(&format!("  or on the dashboard: {base}/ui/approvals\n"));
    out.push_str("  following it until it ends (Ctrl-C stops following, not the run)");
    out
}

/// ` --server URL` (quoted for a shell) when the command was given one, for the commands it
/// suggests; else nothing.
pub fn server_flag(server: Option<&str>) -> String {
    server
        .map(|s| {
            let quoted =
                shlex::try_quote(s).map_or_else(|_| escape(s).into_owned(), |q| q.into_owned());
            format!(" --server {quoted}")
        })
        .unwrap_or_default()
}

/// `users alice, bob or groups oncall` from the approvers the API lists (escaped for a terminal).
pub fn approvers(v: &Value) -> Option<String> {
    let list = |field: &str| -> Vec<String> {
        v[field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(|s| escape(s).into_owned()))
            .collect()
    };
    let (users, groups) = (list("users"), list("groups"));
    let mut parts = Vec::new();
    if !users.is_empty() {
        parts.push(format!("users {}", users.join(", ")));
    }
    if !groups.is_empty() {
        parts.push(format!("groups {}", groups.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join(" or "))
}

/// Who decided on a run that waited (None when it never waited for a person).
pub fn decided(record: &RunRecord) -> Option<String> {
    let a = record.approval.as_ref()?;
    let at = human::instant(a.at);
    if a.by == crate::identity::principal::EXPIRED {
        return Some(format!("not approved: the approval expired at {at}"));
    }
    let verdict = if a.approved { "approved" } else { "denied" };
    let by = escape(&claim::shown(&a.by, a.claimed_by.as_deref())).into_owned();
    Some(format!("{verdict} by {by} at {at}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_says_how_to_approve_and_when_it_expires() {
        let now = Utc::now();
        let at = (now + chrono::Duration::minutes(60)).to_rfc3339();
        let item = serde_json::json!({
            "run": {"runbook": "disk-cleanup"},
            "expires_at": at,
            "approvers": {"users": ["alice\u{1b}[2J"], "groups": []},
        });
        let text = notice("01X", &item, "http://127.0.0.1:1", None, now);
        assert!(text.contains("run 01X waits for approval"), "{text}");
        assert!(text.contains("untoil approve 01X "), "{text}");
        assert!(text.contains("http://127.0.0.1:1/ui/approvals"), "{text}");
        assert!(
            text.contains("(in 1 h)") || text.contains("(in 59 min"),
            "{text}"
        );
        // A hostile name reaches the terminal escaped.
        assert!(!text.contains('\u{1b}'), "{text}");
        let with_server = notice("01X", &item, "http://h:1", Some("http://h:1"), now);
        assert!(with_server.contains("untoil approve 01X --server http://h:1"));
    }

    #[test]
    fn an_expired_approval_is_said_so_not_called_a_denial() {
        let mut run = RunRecord::synthetic(0);
        run.approval = Some(crate::run::record::ApprovalDecision {
            approved: false,
            by: crate::identity::principal::EXPIRED.into(),
            claimed_by: None,
            at: Utc::now(),
        });
        let said = decided(&run).unwrap_or_default();
        assert!(
            said.starts_with("not approved: the approval expired at "),
            "{said}"
        );
        run.approval = Some(crate::run::record::ApprovalDecision {
            approved: true,
            by: "alice".into(),
            claimed_by: Some("bob".into()),
            at: Utc::now(),
        });
        let said = decided(&run).unwrap_or_default();
        assert!(
            said.starts_with("approved by alice (claimed: bob) at "),
            "{said}"
        );
    }
}
