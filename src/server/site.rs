//! The site the daemon is: the hosts it answers to (loopback names and addresses on any port,
//! the host of `--public-url`, each `--allowed-host`, the address it listens on) and its own
//! origin, the one browser origin whose requests may change state.
//!
//! A request for any other host is refused (421) before a handler runs: that is what defeats
//! DNS rebinding, where a foreign name is made to resolve to the daemon's address so that a page
//! of that name can read the daemon's answers as its own.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use crate::server::authority::{Authority, Origin, Scheme};

/// `--public-url`: the address browsers use, e.g. `https://untoil.example.com` behind a proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    origin: Origin,
}

impl PublicUrl {
    /// The origin browsers send for pages of this URL.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }
}

impl FromStr for PublicUrl {
    type Err = String;

    /// An `http` or `https` URL with a host, no user info, and no path, query or fragment.
    fn from_str(s: &str) -> Result<PublicUrl, String> {
        let example =
            "give the address browsers open the dashboard at, like https://untoil.example.com";
        let url = url::Url::parse(s.trim())
            .map_err(|e| format!("`{s}` is not a URL ({e}): {example}"))?;
        let scheme = Scheme::parse(url.scheme())
            .ok_or_else(|| format!("`{s}`: the scheme must be http or https: {example}"))?;
        let name = match url.host() {
            Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => Authority::name_of(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Authority::name_of(IpAddr::V6(ip)),
            None => return Err(format!("`{s}` names no host: {example}")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("`{s}`: no user or password in the public URL"));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "`{s}`: untoil is served at the root of its address; give no path, query or fragment"
            ));
        }
        // The url crate accepts names a Host header could not carry (`a b` percent-encoded).
        let Some(checked) = Authority::parse(&name) else {
            return Err(format!("`{s}`: `{name}` is not a host name"));
        };
        Ok(PublicUrl {
            origin: Origin {
                scheme,
                name: checked.name,
                port: url.port_or_known_default().unwrap_or(scheme.default_port()),
            },
        })
    }
}

/// `--allowed-host NAME[:PORT]`: a further host the daemon answers to (on any port without one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost(Authority);

impl FromStr for AllowedHost {
    type Err = String;

    /// `name`, `name:port`, `[v6]` or `[v6]:port`.
    fn from_str(s: &str) -> Result<AllowedHost, String> {
        if s.contains("://") {
            return Err(format!(
                "`{s}`: give a host as NAME[:PORT] (a URL goes to --public-url)"
            ));
        }
        Authority::parse(s.trim()).map(AllowedHost).ok_or_else(|| {
            format!("`{s}` is not a host: give NAME[:PORT], like untoil.internal:9470")
        })
    }
}

/// One host the daemon answers to: by name, on one port or any, named by URLs of one scheme.
#[derive(Debug, Clone)]
struct Allowed {
    name: String,
    port: Option<u16>,
    scheme: Scheme,
}

impl Allowed {
    /// Whether `name:port` is this host (a Host without a port means the scheme's default).
    fn admits(&self, name: &str, port: Option<u16>) -> bool {
        self.name == name
            && self
                .port
                .is_none_or(|p| p == port.unwrap_or(self.scheme.default_port()))
    }
}

/// The hosts the daemon answers to and its own origin.
#[derive(Debug, Clone)]
pub struct Site {
    public: Option<Origin>,
    hosts: Vec<Allowed>,
}

impl Default for Site {
    /// Loopback names and addresses only.
    fn default() -> Site {
        Site::new(None, &[], None)
    }
}

impl Site {
    /// Loopback (`localhost`, any 127.0.0.0/8 address, `[::1]`; any port, http), the host of
    /// `public` (any port), each of `allowed` (with the public URL's scheme, else http), and
    /// `listen`'s address when it is a specific, non-loopback one.
    pub fn new(
        public: Option<PublicUrl>,
        allowed: &[AllowedHost],
        listen: Option<SocketAddr>,
    ) -> Site {
        let public = public.map(|p| p.origin);
        let scheme = public.as_ref().map_or(Scheme::Http, |o| o.scheme);
        let mut hosts = vec![Allowed {
            name: "localhost".into(),
            port: None,
            scheme: Scheme::Http,
        }];
        if let Some(o) = &public {
            hosts.push(Allowed {
                name: o.name.clone(),
                port: None,
                scheme: o.scheme,
            });
        }
        hosts.extend(allowed.iter().map(|AllowedHost(a)| Allowed {
            name: a.name.clone(),
            port: a.port,
            scheme,
        }));
        let specific = |ip: &IpAddr| !ip.is_unspecified() && !ip.is_loopback();
        if let Some(ip) = listen.map(|l| l.ip()).filter(specific) {
            hosts.push(Allowed {
                name: Authority::name_of(ip),
                port: None,
                scheme: Scheme::Http,
            });
        }
        Site { public, hosts }
    }

    /// The hosts it answers to by name, as `name[:port]` (loopback addresses aside), for logs.
    pub fn names(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| match h.port {
                Some(p) => format!("{}:{p}", h.name),
                None => h.name.clone(),
            })
            .collect()
    }

    /// The schemes URLs of `name:port` can have: of each allowed host that admits it, and http
    /// for loopback addresses and `local` (the address the connection came in on).
    fn schemes(&self, name: &str, port: Option<u16>, local: Option<IpAddr>) -> Vec<Scheme> {
        let mut schemes: Vec<Scheme> = self
            .hosts
            .iter()
            .filter(|h| h.admits(name, port))
            .map(|h| h.scheme)
            .collect();
        let ip = Authority {
            name: name.to_string(),
            port,
        }
        .ip();
        if ip.is_some_and(|ip| ip.is_loopback() || Some(ip) == local) {
            schemes.push(Scheme::Http);
        }
        schemes
    }

    /// Whether the daemon answers to `host` (`local`: the address the connection came in on,
    /// which is the daemon's own whatever it listens on).
    pub fn allows(&self, host: &Authority, local: Option<IpAddr>) -> bool {
        !self.schemes(&host.name, host.port, local).is_empty()
    }

    /// Whether `origin` is the daemon's own for a request sent to `host`: the public URL's
    /// origin, or the very host and port the request was sent to, when that host is allowed,
    /// with its scheme (https for the public host and `--allowed-host`s when the public URL is
    /// https, http otherwise). A page of the same host on another port is another origin.
    pub fn is_own_origin(&self, origin: &Origin, host: &Authority, local: Option<IpAddr>) -> bool {
        if self.public.as_ref() == Some(origin) {
            return true;
        }
        origin.name == host.name
            && origin.port == host.port.unwrap_or(origin.scheme.default_port())
            && self
                .schemes(&origin.name, Some(origin.port), local)
                .contains(&origin.scheme)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> Authority {
        Authority::parse(s).expect("a host")
    }

    fn origin(s: &str) -> Origin {
        Origin::parse(s).expect("an origin")
    }

    fn site(public: Option<&str>, allowed: &[&str], listen: Option<&str>) -> Site {
        Site::new(
            public.map(|p| p.parse().expect("a public URL")),
            &allowed
                .iter()
                .map(|a| a.parse().expect("an allowed host"))
                .collect::<Vec<_>>(),
            listen.map(|l| l.parse().expect("an address")),
        )
    }

    #[test]
    fn loopback_is_allowed_on_any_port_and_nothing_else_by_default() {
        let s = Site::default();
        for ok in [
            "localhost",
            "localhost:1",
            "127.0.0.1:9470",
            "127.1.2.3",
            "[::1]",
            "[::1]:80",
        ] {
            assert!(s.allows(&host(ok), None), "{ok}");
        }
        for no in [
            "evil.example",
            "localhost.evil.example",
            "10.0.0.1:9470",
            "[::2]",
            "0.0.0.0",
        ] {
            assert!(!s.allows(&host(no), None), "{no}");
        }
        // The address the connection came in on is the daemon's.
        let local: IpAddr = "10.0.0.1".parse().expect("ip");
        assert!(s.allows(&host("10.0.0.1:9470"), Some(local)));
        assert!(!s.allows(&host("10.0.0.2:9470"), Some(local)));
    }

    #[test]
    fn the_public_host_allowed_hosts_and_the_listen_address_are_allowed() {
        let s = site(
            Some("https://Untoil.Example.com/"),
            &["untoil.svc:9470", "internal"],
            Some("10.1.2.3:9470"),
        );
        for ok in [
            "untoil.example.com",
            "untoil.example.com:8443",
            "untoil.svc:9470",
            "internal",
            "internal:1",
            "10.1.2.3",
            "10.1.2.3:9470",
        ] {
            assert!(s.allows(&host(ok), None), "{ok}");
        }
        for no in [
            "untoil.svc",
            "untoil.svc:80",
            "example.com",
            "a.untoil.example.com",
        ] {
            assert!(!s.allows(&host(no), None), "{no}");
        }
        // An unspecified listen address is no host name.
        assert!(!site(None, &[], Some("0.0.0.0:9470")).allows(&host("0.0.0.0:9470"), None));
    }

    #[test]
    fn the_own_origin_is_the_public_one_or_the_host_addressed_with_its_scheme() {
        let plain = Site::default();
        let h = host("127.0.0.1:9470");
        assert!(plain.is_own_origin(&origin("http://127.0.0.1:9470"), &h, None));
        for no in [
            "http://127.0.0.1:9471",
            "https://127.0.0.1:9470",
            "http://localhost:9470",
            "http://evil.example:9470",
        ] {
            assert!(!plain.is_own_origin(&origin(no), &h, None), "{no}");
        }
        assert!(plain.is_own_origin(&origin("http://localhost"), &host("localhost"), None));
        assert!(plain.is_own_origin(&origin("http://localhost:80"), &host("localhost"), None));

        let s = site(Some("https://untoil.example.com"), &["internal:8080"], None);
        // Behind a proxy that rewrites Host, the public origin is still the daemon's own.
        assert!(s.is_own_origin(&origin("https://untoil.example.com"), &h, None));
        assert!(s.is_own_origin(&origin("https://untoil.example.com:443"), &h, None));
        let public = host("untoil.example.com");
        assert!(!s.is_own_origin(&origin("http://untoil.example.com"), &public, None));
        assert!(s.is_own_origin(
            &origin("https://internal:8080"),
            &host("internal:8080"),
            None
        ));
        assert!(!s.is_own_origin(
            &origin("http://internal:8080"),
            &host("internal:8080"),
            None
        ));
        // Loopback stays http with a public URL (an SSH tunnel to the daemon).
        let tunnel = host("localhost:8080");
        assert!(s.is_own_origin(&origin("http://localhost:8080"), &tunnel, None));
    }

    #[test]
    fn bad_public_urls_and_hosts_say_what_to_give() {
        for bad in [
            "untoil.example.com",
            "ftp://untoil.example.com",
            "https://",
            "https://u:p@untoil.example.com",
            "https://untoil.example.com/untoil",
            "https://untoil.example.com/?a=b",
            "https://untoil.example.com/#x",
        ] {
            let e = bad.parse::<PublicUrl>().expect_err(bad);
            assert!(e.contains(bad.trim()), "{e}");
        }
        let ok: PublicUrl = "http://[::1]:8080".parse().expect("a public URL");
        assert_eq!(ok.origin(), &origin("http://[::1]:8080"));
        for bad in ["https://x", "", "a b", "x:y"] {
            assert!(bad.parse::<AllowedHost>().is_err(), "{bad}");
        }
    }
}
