//! Remote targets of `run:` steps: the host(s) a command runs on over SSH, as written
//! ([`RawTarget`]) and validated ([`Target`]), and the checks of the values they hold (hosts,
//! jump hosts, users) that both load time and run time apply.

use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::runbook::input::{Checked, InputType, Rule};
use crate::runbook::template::Template;

/// Default time `ssh` waits for a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of hosts a step runs on at once.
pub const DEFAULT_PARALLELISM: u32 = 4;
/// Default number of remote steps (of all runs) on one host at once.
pub const DEFAULT_PER_HOST: u32 = 1;

/// Where a `run:` step runs when not on untoil's host: one host, a list, or an inventory group.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// One host (template), e.g. `{{inputs.host}}`: a DNS name or IP address; a `:port` after
    /// it (Prometheus' `instance`) is the exporter's and is ignored, set `port` for SSH's.
    pub host: Option<String>,
    /// Several hosts: templates, each rendering one host or several separated by commas or
    /// spaces (a label listing hosts).
    pub hosts: Option<Vec<String>>,
    /// An inventory file (YAML: `groups: {NAME: [host, ...]}`, see docs/remote.md).
    pub inventory: Option<String>,
    /// The inventory group whose hosts the step runs on.
    pub group: Option<String>,
    /// Remote user (template), default the `ssh_config`'s or untoil's user.
    pub user: Option<String>,
    /// SSH port, default 22 (or the `ssh_config`'s).
    pub port: Option<u16>,
    /// The private key: a declared secret holding it, or a file.
    pub identity: Option<RawIdentity>,
    /// The known-hosts file host keys are checked against (strictly), default OpenSSH's.
    pub known_hosts: Option<String>,
    /// An `ssh_config` file to use instead of the user's (`ssh -F`).
    pub config: Option<String>,
    /// A jump host, `[user@]host[:port]` (`ssh -J`).
    pub jump: Option<String>,
    /// How long to wait for a connection, default `10s`.
    #[schemars(with = "Option<String>")]
    pub connect_timeout: Option<String>,
    /// Pass untoil's `SSH_AUTH_SOCK` to `ssh` (the agent is never forwarded to the host).
    pub agent: Option<bool>,
    /// Hosts run at once, default 4.
    pub parallelism: Option<u32>,
    /// Remote steps of all runs on one host at once, default 1.
    pub per_host: Option<u32>,
    /// When the step succeeds: `all` hosts (default), `any` host, or `threshold` (see
    /// `threshold`).
    pub policy: Option<String>,
    /// With `policy: threshold` (implied when given alone): hosts that must succeed.
    pub threshold: Option<u32>,
}

/// Where a target's private key comes from: exactly one of `secret` and `file`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// A declared secret holding the key (written to a private file for `ssh`).
    pub secret: Option<String>,
    /// A key file.
    pub file: Option<String>,
}

/// A validated remote target.
#[derive(Debug, Clone)]
pub struct Target {
    /// Which hosts.
    pub hosts: HostSource,
    /// Remote user.
    pub user: Option<Template>,
    /// SSH port.
    pub port: Option<u16>,
    /// The private key.
    pub identity: Option<Identity>,
    /// Known-hosts file.
    pub known_hosts: Option<PathBuf>,
    /// `ssh_config` file.
    pub config: Option<PathBuf>,
    /// Jump host, checked.
    pub jump: Option<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Whether `SSH_AUTH_SOCK` is passed to `ssh`.
    pub agent: bool,
    /// Hosts at once.
    pub parallelism: u32,
    /// Remote steps on one host at once (all runs of this untoil).
    pub per_host: u32,
    /// When the step succeeds.
    pub policy: Policy,
}

/// Which hosts a target names.
#[derive(Debug, Clone)]
pub enum HostSource {
    /// One host.
    One(Template),
    /// Several (each template may render several).
    List(Vec<Template>),
    /// A group of an inventory file, read when the step runs.
    Inventory {
        /// The file.
        file: PathBuf,
        /// The group.
        group: String,
    },
}

impl HostSource {
    /// Its templates.
    pub fn templates(&self) -> Vec<&Template> {
        match self {
            HostSource::One(t) => vec![t],
            HostSource::List(l) => l.iter().collect(),
            HostSource::Inventory { .. } => Vec::new(),
        }
    }
}

/// Where the key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A declared secret.
    Secret(String),
    /// A file.
    File(PathBuf),
}

/// When a step over several hosts succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Every host succeeded.
    All,
    /// At least one host succeeded.
    Any,
    /// At least this many hosts succeeded.
    Threshold(u32),
}

impl Policy {
    /// Whether `succeeded` of `total` hosts satisfy it.
    pub fn satisfied(self, succeeded: usize, total: usize) -> bool {
        match self {
            Policy::All => succeeded == total && total > 0,
            Policy::Any => succeeded > 0,
            Policy::Threshold(n) => succeeded >= n as usize,
        }
    }

    /// As a runbook writes it.
    pub fn written(self) -> String {
        match self {
            Policy::All => "all".into(),
            Policy::Any => "any".into(),
            Policy::Threshold(n) => format!("threshold {n}"),
        }
    }
}

/// A host to connect to: its name (a DNS name or an IP address, never an option) and the port
/// of the target, if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Host {
    /// Name or address, as `ssh` takes it.
    pub name: String,
    /// SSH port, when the target sets one.
    pub port: Option<u16>,
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}:{p}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Checks a host value: a DNS name or IP address, optionally with `:port` (dropped: it is an
/// exporter's in a Prometheus `instance`). Never begins with `-`. Err says what it is not.
pub fn check_host(value: &str) -> Result<String, String> {
    let rule = Rule {
        kind: InputType::Hostname,
        ..Default::default()
    };
    match rule.check(value.trim()) {
        Ok(Checked::Host { host, .. }) => Ok(host),
        _ => Err(format!("is not {}", InputType::Hostname.describe())),
    }
}

/// Checks a remote user name: letters, digits, `.`, `_` and `-`, not beginning with `-`.
pub fn check_user(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err("is not a user name (letters, digits, `.`, `_`, `-`, not beginning with `-`)".into())
    }
}

/// Checks a jump host, `[user@]host[:port]`.
pub fn check_jump(value: &str) -> Result<(), String> {
    let (user, rest) = match value.split_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, value),
    };
    if let Some(u) = user {
        check_user(u)?;
    }
    check_host(rest).map(|_| ())
}

/// Splits what a `hosts` template rendered into hosts (commas and whitespace separate them).
pub fn split_hosts(rendered: &str) -> impl Iterator<Item = &str> {
    rendered
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
}

/// An inventory file: named groups of hosts.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// Groups by name, each a list of hosts (DNS names or IP addresses).
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
}

/// Why an inventory cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// It cannot be read.
    #[error("cannot read inventory {file}: {reason}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// It is not an inventory (with the line and column serde_yaml gives).
    #[error("inventory {file}{at}: {reason}")]
    Invalid {
        /// The file.
        file: String,
        /// ` line L column C`, when known.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// It has no such group.
    #[error("inventory {file} has no group `{group}` (it has: {known})")]
    NoGroup {
        /// The file.
        file: String,
        /// The group asked for.
        group: String,
        /// The groups it has.
        known: String,
    },
}

/// Reads an inventory's group: its hosts, each checked (a bad one is a located error).
pub fn inventory_group(file: &std::path::Path, group: &str) -> Result<Vec<String>, InventoryError> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| InventoryError::Read {
        file: name.clone(),
        reason: e.to_string(),
    })?;
    parse_inventory_group(&name, &text, group)
}

/// [`inventory_group`] on text already read.
pub fn parse_inventory_group(
    name: &str,
    text: &str,
    group: &str,
) -> Result<Vec<String>, InventoryError> {
    let inv: Inventory = serde_yaml::from_str(text).map_err(|e| InventoryError::Invalid {
        file: name.to_string(),
        at: e
            .location()
            .map(|l| format!(" line {} column {}", l.line(), l.column()))
            .unwrap_or_default(),
        reason: e.to_string(),
    })?;
    let Some(hosts) = inv.groups.get(group) else {
        return Err(InventoryError::NoGroup {
            file: name.to_string(),
            group: group.to_string(),
            known: inv.groups.keys().cloned().collect::<Vec<_>>().join(", "),
        });
    };
    let mut out = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let host = check_host(h).map_err(|why| InventoryError::Invalid {
            file: name.to_string(),
            at: locate(text, h)
                .map(|(l, c)| format!(" line {l} column {c}"))
                .unwrap_or_default(),
            reason: format!("groups.{group}[{i}] {why}"),
        })?;
        out.push(host);
    }
    Ok(out)
}

/// The line and column (1-based) where `needle` first appears in `text`.
fn locate(text: &str, needle: &str) -> Option<(usize, usize)> {
    let at = text.find(needle)?;
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = at - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    Some((line, col))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_names_or_addresses_and_never_options() {
        assert_eq!(check_host("db-1:9100"), Ok("db-1".into()));
        assert_eq!(check_host("127.0.0.1"), Ok("127.0.0.1".into()));
        for bad in ["-oProxyCommand=id", "a b", "db;id", "", "$(id)"] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
        assert!(check_jump("ops@bastion:2222").is_ok());
        assert!(check_jump("-J@x").is_err());
        assert!(check_user("-oX").is_err());
        assert_eq!(split_hosts("a, b c").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(Policy::All.satisfied(2, 2) && !Policy::All.satisfied(1, 2));
        assert!(Policy::Threshold(2).satisfied(2, 3) && !Policy::Any.satisfied(0, 3));
    }

    #[test]
    fn an_inventory_error_says_where() {
        let text = "groups:\n  web:\n    - web-1\n    - -oProxyCommand=x\n";
        let e = parse_inventory_group("inv.yaml", text, "web").err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.to_string().contains("line 4 column 7")),
            "{e:?}"
        );
        let e = parse_inventory_group("inv.yaml", "groups: {web: [a]}\nextra: 1\n", "web").err();
        assert!(
            e.as_ref().is_some_and(|e| e.to_string().contains("line 2")),
            "{e:?}"
        );
        assert_eq!(
            parse_inventory_group("i", "groups: {web: [a, b]}", "web"),
            Ok(vec!["a".into(), "b".into()])
        );
    }
}
