//! Which template values others control. Alert data (labels, annotations, the notification),
//! declared inputs (taken from alert data), parameters a caller gave (a value other than the
//! runbook's default) and earlier steps' output come from outside; the runbook's own text, its
//! `env`, its secrets and the run's own fields are the operator's. Untrusted values are the ones
//! the renderer keeps from becoming options or URL parts.

use std::collections::BTreeSet;

use crate::runbook::template::VarRef;

/// The untrusted sources of one run's templates.
#[derive(Debug, Clone, Default)]
pub struct Taint {
    /// Parameters the runbook's defaults did not decide (None: treat every parameter as given).
    trusted_params: Option<BTreeSet<String>>,
    /// Inputs of type `hostname`: checked to be a host, they may form a URL's host.
    host_inputs: BTreeSet<String>,
}

impl Taint {
    /// Everything that can come from outside is untrusted, parameters included (previews and
    /// tests, where nobody knows which parameters a caller gave).
    pub fn strict() -> Taint {
        Taint::default()
    }

    /// Parameters whose value is the runbook's default are the operator's.
    pub fn with_default_params(trusted: impl IntoIterator<Item = String>) -> Taint {
        Taint {
            trusted_params: Some(trusted.into_iter().collect()),
            host_inputs: BTreeSet::new(),
        }
    }

    /// These inputs are hostnames (checked before the run started).
    pub fn with_host_inputs(mut self, names: impl IntoIterator<Item = String>) -> Taint {
        self.host_inputs = names.into_iter().collect();
        self
    }

    /// Whether a variable is a hostname input (or its host or port): it may form a URL's host.
    pub fn forms_host(&self, var: &VarRef) -> bool {
        var.segments.first().map(String::as_str) == Some("inputs")
            && var
                .segments
                .get(1)
                .is_some_and(|n| self.host_inputs.contains(n))
            && matches!(
                var.segments.get(2).map(String::as_str),
                Some("host" | "port" | "value")
            )
    }

    /// The variable's path as written when others control its value, None when the operator does.
    pub fn source(&self, var: &VarRef) -> Option<String> {
        match var.segments.first().map(String::as_str) {
            Some("alert" | "notification" | "steps" | "inputs") => Some(var.raw.clone()),
            Some("params") => {
                let name = var.segments.get(1)?;
                let trusted = self
                    .trusted_params
                    .as_ref()
                    .is_some_and(|t| t.contains(name));
                (!trusted).then(|| var.raw.clone())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(raw: &str) -> VarRef {
        VarRef {
            segments: raw.split('.').map(String::from).collect(),
            raw: raw.into(),
        }
    }

    #[test]
    fn alert_data_inputs_step_output_and_given_parameters_are_untrusted() {
        let t = Taint::with_default_params(["dir".to_string()]);
        for raw in [
            "alert.labels.instance",
            "notification.commonLabels.job",
            "steps.a.stdout",
            "inputs.host",
            "params.user",
        ] {
            assert_eq!(t.source(&var(raw)).as_deref(), Some(raw));
        }
        for raw in ["params.dir", "env.HOME", "secrets.token", "run.id"] {
            assert_eq!(t.source(&var(raw)), None, "{raw}");
        }
        assert_eq!(
            Taint::strict().source(&var("params.dir")).as_deref(),
            Some("params.dir")
        );
    }
}
