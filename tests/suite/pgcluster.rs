//! A real PostgreSQL cluster of a test's own: `initdb` in a temporary directory, run as the
//! unprivileged `postgres` account when the tests run as root (initdb refuses root), listening on
//! a loopback ephemeral port with password (SCRAM) authentication; never the machine's own
//! cluster. Stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Where Debian's `postgresql` package puts its server programs (`<version>/bin`).
const PG_LIB: &str = "/usr/lib/postgresql";

/// The superuser every test cluster is made with.
pub const USER: &str = "untoil";

/// A running test cluster.
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// Its loopback port.
    pub port: u16,
    /// The superuser's password (random per cluster).
    pub password: String,
    /// The server's options (port, socket directory, TLS), for a restart.
    options: String,
}

/// The newest installed server's bin directory. Fails, never skips, when PostgreSQL is missing:
/// scripts/test-deps installs it.
fn bin_dir() -> PathBuf {
    let newest = std::fs::read_dir(PG_LIB).ok().and_then(|dirs| {
        dirs.filter_map(|d| d.ok())
            .filter_map(|d| {
                let v = d.file_name().to_str()?.parse::<u32>().ok()?;
                Some((v, d.path().join("bin")))
            })
            .filter(|(_, bin)| bin.join("initdb").exists())
            .max_by_key(|(v, _)| *v)
    });
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is missing ({PG_LIB}/<version>/bin/initdb): the PostgreSQL tests need a real server; run scripts/test-deps (it installs postgresql)"
        ),
    }
}

/// `program` of the server's bin directory, as the `postgres` account when we are root.
fn as_owner(bin: &Path, program: &str) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(program));
        c
    } else {
        Command::new(bin.join(program))
    }
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Hands `path` to the `postgres` account when we are root (the cluster's files are its own).
fn give(path: &Path) {
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres")
            .ok()
            .flatten()
            .expect("the postgres account (created by Debian's postgresql package) exists");
        std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .expect("chown to postgres");
    }
}

impl Cluster {
    /// Creates and starts a cluster, waiting (pg_ctl -w, with a deadline) until it accepts
    /// connections.
    pub fn start() -> Cluster {
        Cluster::start_with(false)
    }

    /// [`Cluster::start`] that accepts only TLS connections, with a certificate for 127.0.0.1
    /// signed by a CA of its own ([`Cluster::ca`]).
    pub fn start_tls() -> Cluster {
        Cluster::start_with(true)
    }

    /// The CA certificate (PEM) that signed a TLS cluster's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn start_with(tls: bool) -> Cluster {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        give(dir.path());
        let password = format!("pw-{}", ulid::Ulid::new());
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, &password).expect("pwfile");
        give(&pwfile);
        let data = dir.path().join("data");
        run(as_owner(&bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "--auth=scram-sha-256", "-E", "UTF8"])
            .args(["--locale=C.UTF-8", "--no-sync", "--no-instructions"])
            .arg(format!("--pwfile={}", pwfile.display())));
        let mut tls_options = String::new();
        if tls {
            certificates(dir.path());
            // TLS only: a connection without it is rejected, so a client that connects used it.
            let hba = data.join("pg_hba.conf");
            let rest = std::fs::read_to_string(&hba).expect("pg_hba.conf");
            std::fs::write(
                &hba,
                format!("hostnossl all all all reject\nhostssl all all 127.0.0.1/32 scram-sha-256\n{rest}"),
            )
            .expect("pg_hba.conf");
            tls_options = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                dir.path().join("server.crt").display(),
                dir.path().join("server.key").display()
            );
        }
        // A port taken and released just before the server binds it: another test may take it
        // in between, which shows as a failed start (retried).
        for _ in 0..5 {
            let port = crate::common::closed_port();
            // fsync off: test clusters need no durability across power loss, and it keeps two
            // cores' worth of tests fast. Commits stay synchronous: a stop (`-m immediate`, a
            // crash) must keep every commit, as tests of outages check. The socket lives in the
            // temp dir, never /run.
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c shared_buffers=16MB -c max_connections=200{tls_options}",
                dir.path().display()
            );
            let started = as_owner(&bin, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.path().join("log"))
                .args(["-w", "-t", "60", "-o", &options, "start"])
                .output()
                .expect("run pg_ctl");
            if started.status.success() {
                let cluster = Cluster {
                    dir,
                    bin,
                    port,
                    password,
                    options,
                };
                cluster.wait_ready();
                return cluster;
            }
            let log = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
            assert!(
                log.contains("could not bind") || log.contains("Address already in use"),
                "PostgreSQL did not start: {}\n{log}",
                String::from_utf8_lossy(&started.stderr)
            );
        }
        panic!("PostgreSQL could not get a free port in five tries");
    }

    /// Polls with a deadline until a real query answers (pg_ctl -w says so already; this makes
    /// the password path part of the check).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.psql("postgres", "SELECT 1");
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL answers no query: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs one SQL command with psql against `db` as the superuser, over TCP with the password.
    pub fn psql(&self, db: &str, sql: &str) -> std::process::Output {
        Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                db,
                "-c",
                sql,
            ])
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("run psql")
    }

    /// Creates database `name` (an identifier made by the test, `[a-z0-9_]`).
    pub fn create_database(&self, name: &str) {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "test database names are plain identifiers: {name}"
        );
        let out = self.psql("postgres", &format!("CREATE DATABASE {name}"));
        assert!(
            out.status.success(),
            "CREATE DATABASE {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URL of database `db`, password included.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{USER}:{}@127.0.0.1:{}/{db}",
            self.password, self.port
        )
    }

    /// The URL of database `db` without its password (for PGPASSWORD or a password file).
    pub fn url_without_password(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// Stops the server at once (as a crash would), keeping its files.
    pub fn stop(&self) {
        run(as_owner(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"]));
    }

    /// Starts it again on the same port after [`Cluster::stop`].
    pub fn restart(&self) {
        run(as_owner(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "-t", "60", "-o", &self.options, "start"]));
        self.wait_ready();
    }
}

/// A CA and a server certificate for 127.0.0.1 it signed (rustls refuses a CA certificate as a
/// server's), in `dir`, the key readable by the server's account only.
fn certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        run(Command::new("openssl").current_dir(dir).args(args));
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=untoil test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    for f in ["server.crt", "server.key"] {
        give(&dir.join(f));
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod server.key");
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Immediate: the files are deleted next; a clean shutdown would only cost time.
        let _ = as_owner(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

#[test]
fn a_test_cluster_starts_answers_with_its_password_only_and_stops() {
    let cluster = Cluster::start();
    cluster.create_database("probe");
    let out = cluster.psql("probe", "SELECT current_database()");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "probe");
    let wrong = Command::new(cluster.bin.join("psql"))
        .args([
            "-X",
            "-At",
            "-h",
            "127.0.0.1",
            "-p",
            &cluster.port.to_string(),
        ])
        .args(["-U", USER, "-d", "probe", "-c", "SELECT 1"])
        .env("PGPASSWORD", "not-the-password")
        .output()
        .expect("psql");
    assert!(!wrong.status.success(), "a wrong password was accepted");
    let port = cluster.port;
    drop(cluster);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the server still listens after its cluster was dropped"
    );
}
