//! How untoil reaches a PostgreSQL database (fleet mode): the URL, where its password comes from,
//! TLS, and the connection pool. Nothing here connects: the pool opens connections when the
//! store first asks for one, so a database that is down shows as store errors (503 to
//! Alertmanager), not as a daemon that cannot start.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;

/// How long a connection attempt or a wait for a pooled connection may take before the
/// operation fails (and the webhook answers 503, which Alertmanager retries).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What names a PostgreSQL database and how to reach it. Its `Debug` never shows the URL's
/// password.
#[derive(Clone)]
pub struct DatabaseOptions {
    /// `postgres://user[:password]@host[:port]/database[?sslmode=...]` or libpq's
    /// `key=value` form.
    pub url: String,
    /// A file holding the password (its first line), when the URL has none.
    pub password_file: Option<PathBuf>,
    /// PEM certificates to trust for the database's TLS certificate instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Most connections this process opens.
    pub pool_size: usize,
    /// How long the server lets a session of this process sit inside a transaction without a
    /// statement before it ends the session (`idle_in_transaction_session_timeout`), releasing
    /// its row locks: a replica paused there (a stopped VM, a long stall) must not keep the
    /// fleet from taking over its runs. None: the server's setting.
    pub idle_in_transaction: Option<Duration>,
}

impl std::fmt::Debug for DatabaseOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = tokio_postgres::Config::from_str(&self.url)
            .map(|c| redacted(&c))
            .unwrap_or_else(|_| "(not a PostgreSQL URL)".into());
        f.debug_struct("DatabaseOptions")
            .field("url", &url)
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

/// A database URL as given on the command line or in the environment: its `Debug` never shows
/// the password it may hold.
#[derive(Clone)]
pub struct DatabaseUrl(pub String);

impl From<String> for DatabaseUrl {
    fn from(url: String) -> DatabaseUrl {
        DatabaseUrl(url)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match tokio_postgres::Config::from_str(&self.0) {
            Ok(c) => write!(f, "{:?}", redacted(&c)),
            Err(_) => f.write_str("\"(not a PostgreSQL URL)\""),
        }
    }
}

/// A database connection option that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The URL does not parse (the message never repeats the URL: it may hold a password).
    #[error(
        "--database-url (UNTOIL_DATABASE_URL) is not a PostgreSQL URL: {0}; expected postgres://user@host:port/database"
    )]
    Url(String),
    /// The URL names no host (a Unix socket directory is not supported).
    #[error(
        "--database-url (UNTOIL_DATABASE_URL) names no TCP host; give one, as in postgres://user@db.example:5432/untoil"
    )]
    NoHost,
    /// The password file cannot be read.
    #[error("cannot read the database password file {path}: {reason}")]
    PasswordFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The CA file cannot be read or holds no certificate.
    #[error("cannot use {path} as the database's CA certificates: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// TLS cannot be set up.
    #[error("cannot set up TLS to the database: {0}")]
    Tls(String),
    /// The pool cannot be built.
    #[error("cannot build the database connection pool: {0}")]
    Pool(String),
}

/// A pool of connections to the database, and the name (URL without password) that messages
/// use for it.
pub struct Database {
    /// The pool.
    pub pool: Pool,
    /// `postgres://user@host:port/database`: never the password.
    pub name: String,
    /// The settings the pool connects with, for a connection of its own (the fleet's listener).
    pub config: tokio_postgres::Config,
    /// The TLS connector the pool uses.
    pub tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl Database {
    /// Builds the pool `options` describe (see [`config`] for the password).
    pub fn new(
        options: &DatabaseOptions,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Database, DatabaseError> {
        let config = config(options, env)?;
        let name = redacted(&config);
        let tls = tls(options.ca_file.as_deref())?;
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                // Fast: a broken connection shows on its next query, which then fails once
                // (503) rather than every checkout paying a round trip.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| DatabaseError::Pool(e.to_string()))?;
        Ok(Database {
            pool,
            name,
            config,
            tls,
        })
    }
}

/// The connection settings `options` describe. The password comes from the URL, else the
/// password file, else `PGPASSWORD` (read from `env`, the process environment in production).
pub fn config(
    options: &DatabaseOptions,
    env: impl Fn(&str) -> Option<String>,
) -> Result<tokio_postgres::Config, DatabaseError> {
    let mut config = tokio_postgres::Config::from_str(&options.url)
        .map_err(|e| DatabaseError::Url(e.to_string()))?;
    if !config.get_hosts().iter().any(|h| matches!(h, Host::Tcp(_))) {
        return Err(DatabaseError::NoHost);
    }
    if config.get_password().is_none() {
        if let Some(path) = &options.password_file {
            config.password(read_password(path)?);
        } else if let Some(pw) = env("PGPASSWORD").filter(|p| !p.is_empty()) {
            config.password(pw);
        }
    }
    if config.get_user().is_none() {
        // libpq's default: the operating system user.
        if let Some(user) = env("PGUSER").or_else(|| env("USER")) {
            config.user(user);
        }
    }
    // libpq's default `prefer` lets anyone on the path answer "no TLS" and read the password:
    // unless the URL chooses, TLS is required for every host but loopback.
    if !mentions_sslmode(&options.url) && !loopback_only(&config) {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("untoil");
    }
    if let Some(idle) = options.idle_in_transaction {
        // Appended to the URL's own `options`, whose later settings win.
        let setting = format!(
            "-c idle_in_transaction_session_timeout={}",
            idle.as_millis().max(1)
        );
        let all = match config.get_options() {
            Some(given) if !given.is_empty() => format!("{given} {setting}"),
            _ => setting,
        };
        config.options(all);
    }
    Ok(config)
}

/// Whether the URL (or `key=value` string) sets `sslmode` itself.
fn mentions_sslmode(url: &str) -> bool {
    url.to_ascii_lowercase().contains("sslmode")
}

/// Whether every host is this machine's loopback.
fn loopback_only(config: &tokio_postgres::Config) -> bool {
    config.get_hosts().iter().all(|h| match h {
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Host::Unix(_) => true,
    })
}

/// The password file's first line (trailing newline and spaces trimmed, as `.pgpass`-style
/// files are written by editors and `echo`).
fn read_password(path: &Path) -> Result<String, DatabaseError> {
    let text = std::fs::read_to_string(path).map_err(|e| DatabaseError::PasswordFile {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let line = text.lines().next().unwrap_or("").trim_end().to_string();
    if line.is_empty() {
        return Err(DatabaseError::PasswordFile {
            path: path.display().to_string(),
            reason: "it is empty".into(),
        });
    }
    Ok(line)
}

/// `postgres://user@host:port/database` of `config`: what errors and logs name.
pub fn redacted(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().unwrap_or("");
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(h) if h.contains(':') => format!("[{h}]"),
                Host::Tcp(h) => h.clone(),
                Host::Unix(p) => p.display().to_string(),
            };
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let at = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    format!(
        "postgres://{at}{}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or(user)
    )
}

/// The TLS connector: rustls on ring, with the system's trust (as HTTP steps) or the CA file's
/// certificates. With `sslmode=disable` no TLS is attempted; `prefer` (the default) uses TLS
/// when the server offers it; `require` refuses a server without it. Certificates are always
/// verified when TLS is used.
fn tls(ca_file: Option<&Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, DatabaseError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| DatabaseError::Tls(e.to_string()))?;
    let config = match ca_file {
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            let fail = |reason: String| DatabaseError::CaFile {
                path: path.display().to_string(),
                reason,
            };
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| fail(e.to_string()))?
            {
                roots
                    .add(cert.map_err(|e| fail(e.to_string()))?)
                    .map_err(|e| fail(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(fail("it holds no PEM certificate".into()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .with_platform_verifier()
            .map_err(|e| DatabaseError::Tls(e.to_string()))?
            .with_no_client_auth(),
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> DatabaseOptions {
        DatabaseOptions {
            url: url.into(),
            password_file: None,
            ca_file: None,
            pool_size: 4,
            idle_in_transaction: None,
        }
    }

    #[test]
    fn a_replica_asks_the_server_to_end_its_sessions_stalled_inside_a_transaction() {
        let mut o = options("postgres://u@127.0.0.1/d?options=-c%20statement_timeout%3D5s");
        o.idle_in_transaction = Some(Duration::from_secs(30));
        let c = config(&o, no_env).expect("config");
        assert_eq!(
            c.get_options(),
            Some("-c statement_timeout=5s -c idle_in_transaction_session_timeout=30000")
        );
        let plain = config(&options("postgres://u@127.0.0.1/d"), no_env).expect("config");
        assert_eq!(plain.get_options(), None);
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[tokio::test]
    async fn the_name_never_holds_the_password() {
        let db = Database::new(
            &options("postgres://ops:s3cr3t-pw@db.example:6543/untoil?sslmode=require"),
            no_env,
        )
        .expect("pool");
        assert_eq!(db.name, "postgres://ops@db.example:6543/untoil");
        assert!(!db.name.contains("s3cr3t"));
    }

    #[tokio::test]
    async fn the_password_comes_from_the_url_then_the_file_then_pgpassword() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").expect("write");
        let env = |k: &str| (k == "PGPASSWORD").then(|| "from-env".to_string());
        let password = |url: &str, file: Option<&Path>| {
            let mut o = options(url);
            o.password_file = file.map(Path::to_path_buf);
            let c = config(&o, env).expect("config");
            let pw = c.get_password().map(|p| p.to_vec());
            String::from_utf8(pw.unwrap_or_default()).expect("utf-8")
        };
        assert_eq!(password("postgres://u:in-url@h/d", Some(&file)), "in-url");
        assert_eq!(password("postgres://u@h/d", Some(&file)), "from-file");
        assert_eq!(password("postgres://u@h/d", None), "from-env");
    }

    #[test]
    fn tls_is_required_off_loopback_unless_the_url_chooses_and_debug_hides_the_password() {
        let mode = |url: &str| {
            config(&options(url), no_env)
                .expect("config")
                .get_ssl_mode()
        };
        use tokio_postgres::config::SslMode;
        assert_eq!(mode("postgres://u:pw@db.example/d"), SslMode::Require);
        assert_eq!(mode("postgres://u:pw@10.0.0.5:5432/d"), SslMode::Require);
        assert_eq!(
            mode("postgres://u:pw@db.example/d?sslmode=disable"),
            SslMode::Disable
        );
        assert_eq!(mode("postgres://u:pw@127.0.0.1/d"), SslMode::Prefer);
        assert_eq!(mode("postgres://u:pw@localhost/d"), SslMode::Prefer);
        let shown = format!("{:?}", options("postgres://u:hunter2@db.example/d"));
        assert!(
            !shown.contains("hunter2") && shown.contains("postgres://u@db.example"),
            "{shown}"
        );
    }

    #[test]
    fn bad_options_say_what_is_wrong_without_repeating_the_url() {
        let e = Database::new(&options("postgres://u:hunter2@h:notaport/d"), no_env)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("--database-url"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = Database::new(&options("host=/run/postgresql dbname=d"), no_env)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("no TCP host"), "{e}");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = options("postgres://u@h/d");
        o.password_file = Some(dir.path().join("missing"));
        let e = Database::new(&o, no_env)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("password file") && e.contains("missing"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let mut o = options("postgres://u@h/d");
        o.ca_file = Some(empty);
        let e = Database::new(&o, no_env)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
