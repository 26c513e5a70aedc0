//! `untoil serve`: the daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::daemon;
use crate::daemon::exposed;
use crate::daemon::settings::{self, Settings};
use crate::server::site::{AllowedHost, PublicUrl};

use crate::cli::credentials;
use crate::cli::global::Global;
use crate::cli::logging::{self, LogFormat};

/// Arguments of `untoil serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "UNTOIL_LISTEN", default_value = "127.0.0.1:9470")]
    pub listen: SocketAddr,
    /// File holding the bearer token callers must send (env UNTOIL_TOKEN holds it directly).
    #[arg(long, env = "UNTOIL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// File of `user:password` lines accepted as basic auth (env UNTOIL_BASIC_AUTH: one pair).
    #[arg(long, env = "UNTOIL_BASIC_AUTH_FILE")]
    pub basic_auth_file: Option<PathBuf>,
    /// YAML file of named users (basic auth) and tokens (bearer), with groups for runbook
    /// approvers and scopes (full, read, alerts); see docs/api.md, Authentication.
    #[arg(long, env = "UNTOIL_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
    /// Allow listening on a non-loopback address without authentication.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// The address browsers and callers use when it is not loopback, e.g.
    /// https://untoil.example.com behind a proxy: its host is answered and its origin may act.
    /// Requests for other hosts get 421 (loopback and the listen address are always answered).
    #[arg(long, env = "UNTOIL_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<PublicUrl>,
    /// A further host name the daemon answers to, NAME or NAME:PORT (repeatable; env: comma
    /// separated), e.g. the Kubernetes service name Alertmanager calls.
    #[arg(
        long = "allowed-host",
        env = "UNTOIL_ALLOWED_HOSTS",
        value_name = "NAME[:PORT]",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<AllowedHost>,
    /// Runs executing at once (default: 2 x CPUs).
    #[arg(long, env = "UNTOIL_WORKERS")]
    pub workers: Option<usize>,
    /// Runs waiting at most (on a database: in the whole fleet, too); beyond it alerts get 503
    /// with Retry-After.
    #[arg(long, env = "UNTOIL_QUEUE_CAPACITY", default_value_t = 10_000)]
    pub queue_capacity: usize,
    /// How long running steps may finish after SIGTERM before they are killed.
    #[arg(long, default_value = "30s")]
    pub shutdown_grace: String,
    /// On a database (fleet mode): how long this replica's lease lasts without renewal (renewed
    /// every third of it); the runs of a replica that died are taken over by the others about
    /// this long after its last renewal.
    #[arg(long, env = "UNTOIL_LEASE_TTL", default_value = "30s")]
    pub lease_ttl: String,
    /// Largest accepted webhook body, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub body_limit: usize,
    /// Connections served at once; one more is answered 503 and closed (lowered to what the
    /// open-file limit leaves room for).
    #[arg(long, env = "UNTOIL_MAX_CONNECTIONS", default_value_t = settings::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// How long a connection may take to send its request's headers before it is closed.
    #[arg(long, env = "UNTOIL_HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: String,
    /// Log format.
    #[arg(long, value_enum, env = "UNTOIL_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A variable of this environment every step gets besides its base (e.g. SSH_AUTH_SOCK);
    /// repeatable, or comma-separated in the env. untoil's own (UNTOIL_*) never.
    #[arg(
        long = "pass-env",
        value_name = "NAME",
        env = "UNTOIL_PASS_ENV",
        value_delimiter = ','
    )]
    pub pass_env: Vec<String>,
}

/// Runs `untoil serve`.
pub fn run(g: &Global, a: ServeArgs) -> Result<ExitCode> {
    // Before any thread starts, so that every arena the storm's threads reserve is lazy.
    daemon::memory::tune_allocator();
    logging::init(a.log_format);
    let loaded = credentials::load(
        a.token_file.as_deref(),
        a.basic_auth_file.as_deref(),
        a.auth_file.as_deref(),
    )?;
    let auth = loaded.auth;
    if let Some(f) = &a.token_file {
        exposed::check(f, "the token file");
    }
    if let Some(f) = &a.basic_auth_file {
        exposed::check(f, "the basic-auth file");
    }
    if let Some(f) = &a.auth_file {
        exposed::check(f, "the auth file");
    }
    for f in &loaded.secret_files {
        exposed::check(f, "a secret file of the auth file");
    }
    if !auth.enabled() {
        if a.listen.ip().is_loopback() {
            tracing::warn!(
                "no authentication configured: anyone on this host can post alerts and start runs, as `anonymous` (set --auth-file, UNTOIL_TOKEN or --token-file)"
            );
        } else if !a.insecure_no_auth {
            bail!(
                "refusing to listen on {} without authentication: set --auth-file, --token-file/UNTOIL_TOKEN or --basic-auth-file, or pass --insecure-no-auth",
                a.listen
            );
        }
    }
    let mut settings = Settings::new(g.runbooks.clone(), g.plugins.clone(), g.data.clone());
    settings.sources = g.sources.clone();
    settings.database = g.database();
    settings.auth = auth;
    for name in a.pass_env.iter().filter(|n| !n.is_empty()) {
        if crate::runbook::model::reserved_env(name) {
            bail!(
                "--pass-env {name}: untoil's own variables (UNTOIL_*) never reach a step; pass what steps need in a variable of its own"
            );
        }
        settings.pass_env.push(name.clone());
    }
    settings.public_url = a.public_url.clone();
    settings.allowed_hosts = a.allowed_hosts.clone();
    if let Some(w) = a.workers {
        settings.workers = w.max(1);
    }
    settings.queue_capacity = a.queue_capacity.max(1);
    settings.body_limit = a.body_limit;
    settings.shutdown_grace = crate::runbook::model::parse_duration(&a.shutdown_grace)
        .map_err(|e| anyhow::anyhow!("--shutdown-grace `{}`: {e}", a.shutdown_grace))?;
    settings.lease_ttl = crate::runbook::model::parse_duration(&a.lease_ttl)
        .ok()
        .filter(|d| *d >= std::time::Duration::from_secs(1))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--lease-ttl `{}`: expected a duration of at least 1s, such as 30s",
                a.lease_ttl
            )
        })?;
    settings.max_connections = a.max_connections.max(1);
    settings.header_read_timeout = crate::runbook::model::parse_duration(&a.header_read_timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--header-read-timeout `{}`: expected a duration such as 10s",
                a.header_read_timeout
            )
        })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .with_context(|| format!("cannot listen on {}", a.listen))?;
        daemon::run(settings, listener, daemon::shutdown_signal()).await
    })?;
    // Give detached blocking tasks (store flushes) a moment; the store flushed every write.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(ExitCode::SUCCESS)
}
