//! Host names as requests carry them: the `Host` header (`name[:port]`, `[v6][:port]`) and the
//! `Origin` header (`scheme://host[:port]`), parsed strictly: anything else is no host at all.

use std::net::{IpAddr, Ipv6Addr};

use axum::http::{HeaderMap, Uri, header};

/// A scheme a browser can name the daemon by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http`.
    Http,
    /// `https`.
    Https,
}

impl Scheme {
    /// `http` or `https`, case-insensitively.
    pub fn parse(s: &str) -> Option<Scheme> {
        if s.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else if s.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }

    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A host name or IP address (lowercase, an IPv6 address in brackets) and the port, if named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    /// The name: `untoil.example.com`, `127.0.0.1`, `[::1]`.
    pub name: String,
    /// The port, when the value names one.
    pub port: Option<u16>,
}

/// Digits only (`str::parse` would take a sign), as a port.
fn port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Authority {
    /// Parses `name`, `name:port`, `[v6]` or `[v6]:port`; None for anything else (user info,
    /// paths, spaces, an empty name or port).
    pub fn parse(s: &str) -> Option<Authority> {
        if let Some(rest) = s.strip_prefix('[') {
            let (ip, after) = rest.split_once(']')?;
            let ip: Ipv6Addr = ip.parse().ok()?;
            let port = match after {
                "" => None,
                p => Some(port(p.strip_prefix(':')?)?),
            };
            return Some(Authority {
                name: format!("[{ip}]"),
                port,
            });
        }
        let (name, port) = match s.split_once(':') {
            Some((name, p)) => (name, Some(port(p)?)),
            None => (s, None),
        };
        // One trailing dot names the same host (`localhost.`).
        let name = name.strip_suffix('.').unwrap_or(name);
        let valid = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if name.is_empty() || !name.bytes().all(valid) {
            return None;
        }
        Some(Authority {
            name: name.to_ascii_lowercase(),
            port,
        })
    }

    /// The name as an IP address, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        let bare = self
            .name
            .strip_prefix('[')
            .and_then(|n| n.strip_suffix(']'))
            .unwrap_or(&self.name);
        bare.parse().ok()
    }

    /// The name an IP address is written as in a Host header.
    pub fn name_of(ip: IpAddr) -> String {
        match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
        }
    }

    /// The host a request was sent to: the authority of an absolute request URI (RFC 9112,
    /// 3.2.2), else its one `Host` header; None when it names none, several, or a malformed one.
    pub fn of_request(headers: &HeaderMap, uri: &Uri) -> Option<Authority> {
        if let Some(a) = uri.authority() {
            return Authority::parse(a.as_str());
        }
        let mut hosts = headers.get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (Some(h), None) => Authority::parse(h.to_str().ok()?),
            _ => None,
        }
    }
}

/// A browser's `Origin`: scheme, host and the port it means (the scheme's default when unnamed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The scheme.
    pub scheme: Scheme,
    /// The host name or address.
    pub name: String,
    /// The port, explicit or the scheme's default.
    pub port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]` (what browsers send); None for `null` and anything else.
    pub fn parse(s: &str) -> Option<Origin> {
        let (scheme, rest) = s.split_once("://")?;
        let scheme = Scheme::parse(scheme)?;
        let a = Authority::parse(rest)?;
        Some(Origin {
            scheme,
            port: a.port.unwrap_or(scheme.default_port()),
            name: a.name,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(name: &str, port: Option<u16>) -> Option<Authority> {
        Some(Authority {
            name: name.into(),
            port,
        })
    }

    #[test]
    fn hosts_parse_strictly() {
        assert_eq!(
            Authority::parse("LocalHost:9470"),
            a("localhost", Some(9470))
        );
        assert_eq!(Authority::parse("localhost."), a("localhost", None));
        assert_eq!(Authority::parse("127.0.0.1"), a("127.0.0.1", None));
        assert_eq!(Authority::parse("[::1]:80"), a("[::1]", Some(80)));
        assert_eq!(Authority::parse("[0:0::1]"), a("[::1]", None));
        for bad in [
            "",
            ":80",
            "a:",
            "a:+80",
            "a:99999",
            "a:80:80",
            "user@host",
            "a b",
            "a/b",
            "[::1",
            "[::1]80",
            "[nope]",
            "::1",
        ] {
            assert_eq!(Authority::parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            Authority::parse("[::1]:1").and_then(|a| a.ip()),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        assert_eq!(Authority::parse("localhost").and_then(|a| a.ip()), None);
    }

    #[test]
    fn origins_carry_the_port_they_mean() {
        let o = Origin::parse("HTTPS://Untoil.Example.com").expect("an origin");
        assert_eq!(
            (o.scheme, o.name.as_str(), o.port),
            (Scheme::Https, "untoil.example.com", 443)
        );
        let o = Origin::parse("http://127.0.0.1:9470").expect("an origin");
        assert_eq!((o.scheme, o.port), (Scheme::Http, 9470));
        for bad in [
            "null",
            "",
            "ftp://a",
            "http://",
            "http://a/b",
            "http://a:80/",
            "a",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_request_names_one_host() {
        let uri: Uri = "/x".parse().expect("uri");
        let mut h = HeaderMap::new();
        assert_eq!(Authority::of_request(&h, &uri), None);
        h.append(header::HOST, "localhost:1".parse().expect("value"));
        assert_eq!(Authority::of_request(&h, &uri), a("localhost", Some(1)));
        let absolute: Uri = "http://127.0.0.1:2/x".parse().expect("uri");
        assert_eq!(
            Authority::of_request(&h, &absolute),
            a("127.0.0.1", Some(2))
        );
        h.append(header::HOST, "evil.example".parse().expect("value"));
        assert_eq!(Authority::of_request(&h, &uri), None);
    }
}
