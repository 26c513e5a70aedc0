//! The environment of a step's process: built, never inherited. A small base taken from the
//! daemon's own environment (`PATH`, `HOME`, locale, `TZ`, the user, `TMPDIR`), the variables a
//! runbook declares it reads (`env:`) and those the daemon is told to pass on (`--pass-env`),
//! then the run's own `UNTOIL_*` variables and its secrets. untoil's own settings and
//! credentials (every `UNTOIL_*` variable of the daemon) never reach a step, whatever a list
//! says: a step that prints its environment shows nothing of untoil's or of other runbooks'.

use crate::runbook::model::reserved_env as reserved;

/// Variables every step gets from the daemon's environment, when it has them.
pub const BASE: &[&str] = &["PATH", "HOME", "LANG", "TZ", "USER", "LOGNAME", "TMPDIR"];

/// The `PATH` a step gets when the daemon has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The daemon's environment, read once: nothing in untoil changes it while it runs, and copying
/// every variable for every run showed in profiles of alert storms. Variables that are not
/// UTF-8 are left out.
pub fn daemon() -> &'static [(String, String)] {
    static ENV: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    })
}

/// The base environment of a step: the [`BASE`] variables and `LC_*`, then `passthrough` (the
/// runbook's declared variables and the daemon's `--pass-env`), from `from` (the daemon's
/// environment). Reserved names are left out.
pub fn base<'a, K, V>(
    from: impl IntoIterator<Item = (K, V)>,
    passthrough: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, String)>
where
    K: AsRef<str> + Into<String>,
    V: Into<String>,
{
    let wanted: Vec<&str> = passthrough.into_iter().collect();
    // Filtered before anything is copied.
    let mut out: Vec<(String, String)> = from
        .into_iter()
        .filter(|(k, _)| {
            let k = k.as_ref();
            !reserved(k) && (BASE.contains(&k) || k.starts_with("LC_") || wanted.contains(&k))
        })
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    out.sort();
    out
}

/// The environment variable a secret is exported as: `db_password` -> `UNTOIL_SECRET_DB_PASSWORD`.
pub fn secret_var(name: &str) -> String {
    format!("UNTOIL_SECRET_{}", upper_name(name))
}

/// `instance` -> `INSTANCE`, `k8s.pod-name` -> `K8S_POD_NAME`.
pub fn upper_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_base_keeps_what_steps_need_and_never_untoils_own_variables() {
        let daemon = env(&[
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("LC_ALL", "C.UTF-8"),
            ("UNTOIL_TOKEN", "t0ken"),
            ("UNTOIL_BASIC_AUTH", "u:p"),
            ("AWS_SECRET_ACCESS_KEY", "aws"),
            ("SSH_AUTH_SOCK", "/tmp/agent"),
            ("DEPLOY_ENV", "prod"),
        ]);
        let got = base(daemon.clone(), ["DEPLOY_ENV", "UNTOIL_TOKEN"]);
        assert_eq!(
            got,
            env(&[
                ("DEPLOY_ENV", "prod"),
                ("HOME", "/root"),
                ("LC_ALL", "C.UTF-8"),
                ("PATH", "/bin")
            ])
        );
        let with_agent = base(daemon, ["SSH_AUTH_SOCK"]);
        assert!(with_agent.contains(&("SSH_AUTH_SOCK".into(), "/tmp/agent".into())));
        assert!(
            !with_agent
                .iter()
                .any(|(k, _)| k.starts_with("UNTOIL_") || k.starts_with("AWS"))
        );
    }

    #[test]
    fn a_daemon_without_path_gives_steps_a_default_one() {
        assert_eq!(
            base(env(&[("HOME", "/h")]), []),
            env(&[("HOME", "/h"), ("PATH", DEFAULT_PATH)])
        );
        assert_eq!(secret_var("db-password"), "UNTOIL_SECRET_DB_PASSWORD");
    }

    #[test]
    fn the_daemon_environment_read_once_is_the_process_environment() {
        let now: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect();
        assert_eq!(daemon(), now.as_slice());
        assert!(std::ptr::eq(daemon(), daemon()), "read once");
    }
}
