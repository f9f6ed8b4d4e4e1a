//! A real PostgreSQL server for tests: the Debian binaries (`initdb`, `postgres`), a temporary
//! directory, a free loopback port, run as the `postgres` user when the test runs as root (the
//! server refuses to run as root). No PostgreSQL service is used or needed.
//!
//! [`Postgres::init`] gives a test its own server, stopped (by its pid) when dropped.
//! [`shared`] gives every test of one test binary the same server, each test making its own
//! database ([`Postgres::create_database`]). It is shut down by the kernel's signal when the
//! test binary exits or is killed (`setpriv --pdeathsig INT`, util-linux: a fast shutdown,
//! which also frees its shared memory); its directory is removed by the next test binary that
//! starts a shared server (its owner's pid is gone by then).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The password of the `warden` superuser every server here is made with.
pub const PASSWORD: &str = "warden-test-password";

/// A PostgreSQL server of our own.
pub struct Postgres {
    child: Option<Child>,
    bin: PathBuf,
    dir: tempfile::TempDir,
    user: Option<(u32, u32)>,
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// Kill the server when the thread that started it ends (see [`shared`]).
    die_with_parent: bool,
    /// Serve TLS too (a self-signed certificate made by [`Postgres::init_tls`]).
    tls: bool,
}

impl Postgres {
    /// Makes a server (superuser `warden` with `password`, over TCP with scram-sha-256) and
    /// starts it; [`Postgres::wait_ready`] waits until it accepts connections.
    pub fn init(password: &str) -> Self {
        Self::make(password, false)
    }

    /// [`Postgres::init`], serving TLS as well with a self-signed certificate (openssl).
    pub fn init_tls(password: &str) -> Self {
        let mut pg = Self::init(password);
        pg.stop();
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj"])
            .args(["/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.crt"])
            .current_dir(pg.dir.path().join("data"))
            .output()
            .expect("run openssl");
        assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
        for f in ["server.key", "server.crt"] {
            let p = pg.dir.path().join("data").join(f);
            if let Some((uid, gid)) = pg.user {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown to postgres");
            }
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        pg.tls = true;
        pg.start();
        pg
    }

    /// [`Postgres::init`] with [`PASSWORD`], ready, made off the async runtime's threads.
    pub async fn started() -> Self {
        tokio::task::spawn_blocking(|| {
            let pg = Self::init(PASSWORD);
            pg.wait_ready();
            pg
        })
        .await
        .expect("PostgreSQL starts")
    }

    fn make(password: &str, die_with_parent: bool) -> Self {
        let bin = bindir();
        let prefix = if die_with_parent { SHARED_PREFIX } else { "warden-pg-" };
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().expect("a temp dir");
        // Written whole (renamed into place): a sweep never reads half an owner.
        let owner = dir.path().join("owner.tmp");
        std::fs::write(&owner, std::process::id().to_string()).expect("write the owner file");
        std::fs::rename(&owner, dir.path().join("owner")).expect("name the owner file");
        let user = if is_root() {
            Some(
                postgres_user().expect("running as root needs a `postgres` user to run PostgreSQL"),
            )
        } else {
            None
        };
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, password).expect("write the password file");
        std::fs::create_dir(dir.path().join("sock")).expect("make the socket dir");
        if let Some((uid, gid)) = user {
            for p in [dir.path().to_path_buf(), pwfile.clone(), dir.path().join("sock")] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown to postgres");
            }
        }
        let mut pg =
            Self { child: None, bin, dir, user, port: free_port(), die_with_parent, tls: false };
        let out = pg
            .command("initdb")
            .args(["-D", "data", "-U", "warden", "--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "--encoding=UTF8", "--locale=C"])
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        pg.start();
        pg
    }

    fn command(&self, program: &str) -> Command {
        self.command_with(Command::new(self.bin.join(program)))
    }

    fn command_with(&self, mut c: Command) -> Command {
        use std::os::unix::process::CommandExt;
        c.current_dir(self.dir.path()).env_remove("PGDATA").env_remove("PGHOST");
        if let Some((uid, gid)) = self.user {
            c.uid(uid).gid(gid).env("HOME", self.dir.path());
        }
        c
    }

    /// Starts the server (again, after [`Postgres::stop`]) on the same port and data.
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).expect("log file");
        let postgres = self.bin.join("postgres");
        // setpriv sets the parent-death signal after the uid change (which would clear it) and
        // execs the server in its place, so the pid below is the postmaster's.
        let mut command = if self.die_with_parent {
            assert!(
                Path::new(SETPRIV).exists(),
                "{SETPRIV} is missing (Debian package util-linux): the shared PostgreSQL would \
                 outlive the tests"
            );
            let mut c = Command::new(SETPRIV);
            c.args(["--pdeathsig", "INT", "--"]).arg(postgres);
            self.command_with(c)
        } else {
            self.command_with(Command::new(postgres))
        };
        command
            .args(["-D", "data", "-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path().join("sock"))
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=200"])
            .args(if self.tls { &["-c", "ssl=on"][..] } else { &[][..] })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(command.spawn().expect("start postgres"));
    }

    /// Waits (up to 30 s) until the server answers over its socket.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .command("pg_isready")
                .arg("-h")
                .arg(self.dir.path().join("sock"))
                .args(["-p", &self.port.to_string(), "-U", "warden", "-d", "postgres"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not start: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// The first row of a query on `database`, its fields separated by `|` (psql -At).
    pub fn query(&self, database: &str, sql: &str) -> String {
        let out = self
            .command("psql")
            .arg("-h")
            .arg(self.dir.path().join("sock"))
            .args(["-p", &self.port.to_string(), "-U", "warden", "-d", database])
            .args(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").to_owned()
    }

    /// Runs SQL over the local socket (trusted) with psql, against `database` `postgres`.
    pub fn psql(&self, sql: &str) {
        let out = self
            .command("psql")
            .arg("-h")
            .arg(self.dir.path().join("sock"))
            .args(["-p", &self.port.to_string(), "-U", "warden", "-d", "postgres"])
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A URL for `database` as the `warden` superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://warden:{PASSWORD}@127.0.0.1:{}/{database}", self.port)
    }

    /// Makes a new, empty database with a unique name and returns its URL.
    pub fn create_database(&self, prefix: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name: String = format!("{prefix}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .collect();
        self.psql(&format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Fast shutdown (SIGINT to the postmaster, by its pid), SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The postmaster's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

const SETPRIV: &str = "/usr/bin/setpriv";
const SHARED_PREFIX: &str = "warden-pg-shared-";

/// A server a test stops and starts while async tasks use it.
pub type Shared = std::sync::Arc<Mutex<Postgres>>;

/// Stops `pg` (off the async runtime's threads).
pub async fn stop(pg: &Shared) {
    let pg = std::sync::Arc::clone(pg);
    tokio::task::spawn_blocking(move || pg.lock().expect("not poisoned").stop())
        .await
        .expect("PostgreSQL stops");
}

/// Starts `pg` again and waits until it is ready.
pub async fn start(pg: &Shared) {
    let pg = std::sync::Arc::clone(pg);
    tokio::task::spawn_blocking(move || {
        let mut pg = pg.lock().expect("not poisoned");
        pg.start();
        pg.wait_ready();
    })
    .await
    .expect("PostgreSQL starts");
}

static SHARED: OnceLock<Mutex<Postgres>> = OnceLock::new();

/// The test binary's one server (started on first use, ready when returned). Each test makes
/// its own database on it with [`Postgres::create_database`].
pub fn shared() -> std::sync::MutexGuard<'static, Postgres> {
    let cell = SHARED.get_or_init(|| {
        sweep_stale_shared_dirs();
        // Started from a thread that lives as long as the process: the kernel's parent-death
        // signal fires when the *thread* that forked the server ends, and test threads end
        // after their test.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("postgres-parent".into())
            .spawn(move || {
                let pg = Postgres::make(PASSWORD, true);
                pg.wait_ready();
                tx.send(pg).expect("the test waits for its server");
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the postgres thread");
        Mutex::new(rx.recv().expect("PostgreSQL started"))
    });
    cell.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The URL of a new database on the [`shared`] server.
pub fn shared_database(prefix: &str) -> String {
    shared().create_database(prefix)
}

/// Removes the directories of shared servers whose test binary is gone (statics are never
/// dropped, so each run leaves its directory behind for the next to remove).
fn sweep_stale_shared_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(SHARED_PREFIX) {
            continue;
        }
        // No owner file yet: being made right now by another test binary.
        let Ok(owner) = std::fs::read_to_string(e.path().join("owner")) else { continue };
        let alive = owner
            .trim()
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Where the PostgreSQL server binaries are: `pg_config --bindir`, else the newest
/// /usr/lib/postgresql/*/bin that has `initdb`.
fn bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() && dir.join("postgres").exists() {
            return dir;
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    found.retain(|b| b.join("initdb").exists() && b.join("postgres").exists());
    found.sort_by_key(|b| {
        b.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop().expect(
        "PostgreSQL server binaries (initdb, postgres) are missing: install the Debian package \
         postgresql (.ci/run does)",
    )
}

fn is_root() -> bool {
    // /proc/self belongs to the effective user.
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// The uid and gid of the `postgres` user, from /etc/passwd.
fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
