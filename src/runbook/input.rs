//! Typed values: what a parameter or an input declares it accepts (`type`, `pattern`,
//! `allowed`), and the check every value passes before a run may use it. A value that fails is
//! refused before any step runs, with the rule it broke (never the value itself: it may be
//! anything an alert or a caller sent).

use std::net::{Ipv4Addr, Ipv6Addr};

use regex::Regex;

/// The kinds of value a parameter or input may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputType {
    /// Any text (the default).
    #[default]
    String,
    /// A whole number, e.g. `-3`, `42`.
    Int,
    /// `true` or `false`.
    Bool,
    /// A duration such as `30s` or `1h30m`.
    Duration,
    /// A DNS name or IP address, with an optional port: `db-1`, `db-1:9100`, `10.0.0.5`,
    /// `[2001:db8::1]:9100`. Never begins with `-`.
    Hostname,
    /// An absolute, normalised path without `..`.
    Path,
}

impl InputType {
    /// Every type, by the name runbooks use.
    pub const ALL: [(&'static str, InputType); 6] = [
        ("string", InputType::String),
        ("int", InputType::Int),
        ("bool", InputType::Bool),
        ("duration", InputType::Duration),
        ("hostname", InputType::Hostname),
        ("path", InputType::Path),
    ];

    /// The type a runbook names.
    pub fn parse(name: &str) -> Option<InputType> {
        InputType::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| *t)
    }

    /// Its name in runbooks.
    pub fn name(self) -> &'static str {
        InputType::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("string", |(n, _)| n)
    }

    /// What a value of this type looks like, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            InputType::String => "text",
            InputType::Int => "a whole number",
            InputType::Bool => "`true` or `false`",
            InputType::Duration => "a duration such as 30s or 1h30m",
            InputType::Hostname => "a hostname: a DNS name or IP address, with an optional :port",
            InputType::Path => "an absolute path without `..`",
        }
    }
}

/// The rule a value must pass.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// Its type.
    pub kind: InputType,
    /// A regex the whole value must match (anchored at both ends).
    pub pattern: Option<Regex>,
    /// The pattern as written.
    pub pattern_source: Option<String>,
    /// The values allowed, when listed.
    pub allowed: Vec<String>,
}

impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind
            && self.pattern_source == other.pattern_source
            && self.allowed == other.allowed
    }
}

/// A value that passed its rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// Any type but hostname: the value (a path normalised).
    Text(String),
    /// A hostname, with its host (an IPv6 address without brackets) and port apart.
    Host {
        /// The value as given.
        value: String,
        /// The host.
        host: String,
        /// The port, when given.
        port: Option<u16>,
    },
}

impl Checked {
    /// The value as templates see it: the text, or `{value, host, port}` for a hostname.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Checked::Text(t) => serde_json::Value::String(t.clone()),
            Checked::Host { value, host, port } => serde_json::json!({
                "value": value,
                "host": host,
                "port": port.map(|p| p.to_string()).unwrap_or_default(),
            }),
        }
    }

    /// The value as text (a hostname as given).
    pub fn text(&self) -> &str {
        match self {
            Checked::Text(t) => t,
            Checked::Host { value, .. } => value,
        }
    }
}

/// Compiles a pattern anchored at both ends.
pub fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
        e.to_string()
            .lines()
            .last()
            .unwrap_or("invalid regex")
            .trim()
            .trim_start_matches("error: ")
            .to_string()
    })
}

impl Rule {
    /// Checks a value; Err says which rule it breaks.
    pub fn check(&self, value: &str) -> Result<Checked, String> {
        if value.contains('\0') {
            return Err("contains a NUL byte".into());
        }
        let checked = match self.kind {
            InputType::String => Checked::Text(value.to_string()),
            InputType::Int => value
                .parse::<i64>()
                .map(|_| Checked::Text(value.to_string()))
                .map_err(|_| format!("is not {}", self.kind.describe()))?,
            InputType::Bool => match value {
                "true" | "false" => Checked::Text(value.to_string()),
                _ => return Err(format!("is not {}", self.kind.describe())),
            },
            InputType::Duration => humantime::parse_duration(value)
                .map(|_| Checked::Text(value.to_string()))
                .map_err(|_| format!("is not {}", self.kind.describe()))?,
            InputType::Hostname => {
                hostname(value).ok_or_else(|| format!("is not {}", self.kind.describe()))?
            }
            InputType::Path => Checked::Text(path(value)?),
        };
        if let Some(p) = &self.pattern
            && !p.is_match(value)
        {
            return Err(format!(
                "does not match the pattern `{}`",
                self.pattern_source.as_deref().unwrap_or("")
            ));
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|a| a == value) {
            return Err(format!("is not one of: {}", self.allowed.join(", ")));
        }
        Ok(checked)
    }
}

/// A DNS label: letters, digits and `-`, not at either end, 1 to 63 characters.
fn dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A DNS name (an optional trailing dot) or an IPv4 address.
fn dns_name_or_ipv4(host: &str) -> bool {
    if host.parse::<Ipv4Addr>().is_ok() {
        return true;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty() && name.len() <= 253 && name.split('.').all(dns_label)
}

fn port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|p| *p > 0)
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
fn hostname(value: &str) -> Option<Checked> {
    let checked = |host: &str, port: Option<u16>| Checked::Host {
        value: value.to_string(),
        host: host.to_string(),
        port,
    };
    if let Some(rest) = value.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<Ipv6Addr>().ok()?;
        return match after {
            "" => Some(checked(v6, None)),
            p => Some(checked(v6, Some(port(p.strip_prefix(':')?)?))),
        };
    }
    if value.parse::<Ipv6Addr>().is_ok() {
        return Some(checked(value, None));
    }
    if let Some((host, p)) = value.split_once(':') {
        if !dns_name_or_ipv4(host) {
            return None;
        }
        return Some(checked(host, Some(port(p)?)));
    }
    dns_name_or_ipv4(value).then(|| checked(value, None))
}

/// An absolute path, normalised (`//` and `.` removed); `..` is refused.
fn path(value: &str) -> Result<String, String> {
    if !value.starts_with('/') {
        return Err("is not an absolute path".into());
    }
    let mut parts = Vec::new();
    for part in value.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("contains `..`".into()),
            p => parts.push(p),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: InputType) -> Rule {
        Rule {
            kind,
            ..Default::default()
        }
    }

    #[test]
    fn hostnames_accept_what_prometheus_instance_labels_hold_and_never_an_option() {
        let r = rule(InputType::Hostname);
        for (value, host, port) in [
            ("db-1", "db-1", None),
            ("db-1.example.com.", "db-1.example.com.", None),
            ("db-1:9100", "db-1", Some(9100)),
            ("10.0.0.5:22", "10.0.0.5", Some(22)),
            ("[2001:db8::1]:9100", "2001:db8::1", Some(9100)),
            ("[::1]", "::1", None),
            ("2001:db8::1", "2001:db8::1", None),
        ] {
            assert_eq!(
                r.check(value),
                Ok(Checked::Host {
                    value: value.into(),
                    host: host.into(),
                    port
                }),
                "{value}"
            );
        }
        for bad in [
            "-oProxyCommand=sh",
            "-db",
            "db-",
            "db_1",
            "db 1",
            "db-1:",
            "db-1:0",
            "db-1:99999",
            "db-1:22:33",
            "[::1",
            "[::1]x",
            "a..b",
            "",
            "evil.example@127.0.0.1",
            "host/path",
        ] {
            assert!(r.check(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths_are_absolute_normalised_and_never_climb() {
        let r = rule(InputType::Path);
        assert_eq!(
            r.check("/var//log/./x"),
            Ok(Checked::Text("/var/log/x".into()))
        );
        assert_eq!(r.check("/"), Ok(Checked::Text("/".into())));
        assert!(r.check("var/log").is_err());
        assert!(r.check("/var/../etc").is_err());
        assert!(r.check("-delete").is_err());
    }

    #[test]
    fn numbers_booleans_durations_patterns_and_allowed_lists() {
        assert!(rule(InputType::Int).check("-42").is_ok());
        assert!(rule(InputType::Int).check("4.2").is_err());
        assert!(rule(InputType::Bool).check("true").is_ok());
        assert!(rule(InputType::Bool).check("yes").is_err());
        assert!(rule(InputType::Duration).check("1h30m").is_ok());
        assert!(rule(InputType::Duration).check("soon").is_err());
        let unit = Rule {
            pattern: compile_pattern("[a-z-]+\\.service").ok(),
            pattern_source: Some("[a-z-]+\\.service".into()),
            ..Default::default()
        };
        assert!(unit.check("nginx.service").is_ok());
        assert_eq!(
            unit.check("x nginx.service"),
            Err("does not match the pattern `[a-z-]+\\.service`".into())
        );
        let env = Rule {
            allowed: vec!["staging".into(), "prod".into()],
            ..Default::default()
        };
        assert!(env.check("prod").is_ok());
        assert_eq!(env.check("dev"), Err("is not one of: staging, prod".into()));
        assert!(rule(InputType::String).check("a\0b").is_err());
        for (name, t) in InputType::ALL {
            assert_eq!(InputType::parse(name), Some(t));
            assert_eq!(t.name(), name);
        }
    }
}
