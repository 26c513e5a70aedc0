//! What a credential may do: everything, only read, or only post alerts.

use serde::Deserialize;

/// The requests a credential may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Any request (the default, and what the legacy token and basic-auth users have).
    #[default]
    Full,
    /// `GET` and `HEAD` only: the API, the dashboard, the metrics.
    Read,
    /// `POST`s to the Alertmanager receiver only (what Alertmanager needs).
    Alerts,
}

impl Scope {
    /// The name the auth file uses: `full`, `read` or `alerts`.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Full => "full",
            Scope::Read => "read",
            Scope::Alerts => "alerts",
        }
    }

    /// What the scope allows, for messages.
    pub fn allows(self) -> &'static str {
        match self {
            Scope::Full => "any request",
            Scope::Read => "only GET and HEAD requests",
            Scope::Alerts => {
                "only POSTs to the alert receivers (/api/v1/alerts/alertmanager, /api/v1/alerts/grafana)"
            }
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
