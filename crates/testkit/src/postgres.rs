//! Throwaway PostgreSQL clusters for tests.
//!
//! [`Cluster::start`] makes a cluster of its own: `initdb` in a temporary
//! directory, a server on a free port of 127.0.0.1 (never 5432 unless the
//! kernel hands it out free, never the system cluster), with its Unix
//! socket in that directory. A superuser `tester` with a random password
//! ([`Cluster::url`]) logs in over TCP with SCRAM-SHA-256, so password
//! tests are real; local (socket) connections are trusted.
//! [`Cluster::start_tls`] adds `ssl=on` with a certificate made for the
//! test by a certificate authority of its own ([`Cluster::ca_cert`]).
//!
//! Running as root (as CI does), `initdb` and the server run as the
//! `postgres` OS user (the server refuses to run as root), and the
//! directory is that user's.
//!
//! Nothing outlives the test: dropping the [`Cluster`] stops the server
//! (fast shutdown, SIGKILL if it lingers) and removes the directory, also
//! when the test panics. If the test process itself is SIGKILLed, the
//! server gets SIGQUIT from the kernel (a parent-death signal) and shuts
//! down at once, taking its own processes with it; the directory is left
//! (no process of ours is alive to remove it) and removed by the next
//! [`Cluster::start`] on the machine, which deletes the directories of
//! clusters whose process is gone.
//!
//! Needs the PostgreSQL server binaries (see [`server_bindir`]; Debian's
//! `postgresql` package, which `.ci/run` installs), and `openssl` for
//! [`Cluster::start_tls`].

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::{deadline, sys};

/// The role every cluster's [`Cluster::url`] logs in as (its superuser).
pub const USER: &str = "tester";

/// How long a server may take to accept connections after its start, or
/// to stop after a fast shutdown request, on a loaded two-core machine.
pub const SERVER_TIMEOUT: Duration = Duration::from_secs(60);

/// The prefix of every cluster directory (under the temporary directory).
const DIR_PREFIX: &str = "procsync-pg-";

/// A PostgreSQL cluster made for one test, stopped and removed on drop.
#[derive(Debug)]
pub struct Cluster {
    root: PathBuf,
    bindir: PathBuf,
    port: u16,
    password: String,
    owner: Option<(u32, u32)>,
    tls: bool,
    postmaster: Option<Child>,
    /// Stopped by SIGKILL: its shared memory is cleaned by the next start.
    killed: bool,
    /// Server settings given by the caller, after (so over) the defaults.
    settings: Vec<String>,
}

impl Cluster {
    /// Makes and starts a cluster without TLS. Panics (failing the test)
    /// when the server binaries are missing or it does not start within
    /// [`SERVER_TIMEOUT`].
    pub fn start() -> Cluster {
        Cluster::make(false, &[])
    }

    /// As [`start`](Cluster::start), with server settings (`"name=value"`)
    /// over the defaults: `["max_connections=200", "fsync=on"]` for a
    /// benchmark of a hundred collectors at full durability.
    pub fn start_with(settings: &[&str]) -> Cluster {
        Cluster::make(false, settings)
    }

    /// Makes and starts a cluster with `ssl=on`, serving a certificate
    /// for `127.0.0.1` and `localhost` signed by [`Cluster::ca_cert`].
    pub fn start_tls() -> Cluster {
        Cluster::make(true, &[])
    }

    fn make(tls: bool, settings: &[&str]) -> Cluster {
        let bindir = server_bindir();
        remove_abandoned_directories();
        let owner = if sys::is_root() {
            Some(postgres_user())
        } else {
            None
        };
        let root = new_directory(owner);
        let password = random_hex(16);
        let mut cluster = Cluster {
            root,
            bindir,
            port: 0,
            password,
            owner,
            tls,
            postmaster: None,
            killed: false,
            settings: settings.iter().map(|s| s.to_string()).collect(),
        };
        cluster.initdb();
        if tls {
            cluster.make_certificates();
        }
        // A free port now may be taken by another process before the
        // server binds it: then try another.
        for attempt in 0.. {
            cluster.port = free_port();
            match cluster.launch() {
                Ok(()) => break,
                Err(log) if attempt < 5 && log.contains("could not bind") => continue,
                Err(log) => panic!("the PostgreSQL server did not start:\n{log}"),
            }
        }
        cluster
    }

    /// `postgresql://tester:PASSWORD@127.0.0.1:PORT/postgres`: the URL
    /// to connect with (TCP, password authentication).
    pub fn url(&self) -> String {
        format!(
            "postgresql://{USER}:{}@127.0.0.1:{}/postgres",
            self.password, self.port
        )
    }

    /// [`Cluster::url`] without the password.
    pub fn url_without_password(&self) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// The password of [`USER`].
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The TCP port on 127.0.0.1 (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory: the data directory `data`, the server's
    /// Unix socket, its log `server.log`, and for TLS its certificates.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The certificate of the authority that signed the server's
    /// certificate (for `sslrootcert`), on a TLS cluster.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.tls.then(|| self.root.join("ca.crt"))
    }

    /// The server's (postmaster's) process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Child::id)
    }

    /// The server's processes: the postmaster and its children (empty
    /// when it is not running).
    pub fn processes(&self) -> Vec<u32> {
        match self.pid() {
            Some(pid) => {
                let mut all = vec![pid];
                all.extend(children_of(pid));
                all
            }
            None => Vec::new(),
        }
    }

    /// Freezes the server: SIGSTOP to all its processes. It still accepts
    /// TCP connections (the kernel does that) but answers nothing, as a
    /// hung or overloaded store would. [`Cluster::resume`] thaws it; a stop
    /// or drop does too.
    pub fn pause(&self) {
        for pid in self.processes() {
            sys::signal(pid, Signal::STOP);
        }
    }

    /// Thaws a server frozen by [`Cluster::pause`] (SIGCONT to all its
    /// processes).
    pub fn resume(&self) {
        for pid in self.processes() {
            sys::signal(pid, Signal::CONT);
        }
    }

    /// Stops the server (fast shutdown: sessions are ended, data is
    /// kept), SIGKILLing it if it has not stopped within
    /// [`SERVER_TIMEOUT`]. Does nothing if it is not running.
    pub fn stop(&mut self) {
        self.resume();
        let Some(mut child) = self.postmaster.take() else {
            return;
        };
        sys::signal(child.id(), Signal::INT);
        let limit = deadline(SERVER_TIMEOUT);
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            if Instant::now() >= limit {
                self.postmaster = Some(child);
                self.kill();
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILLs the server and every process of it, as a crash would, and
    /// waits until they are gone. Does nothing if it is not running.
    pub fn kill(&mut self) {
        let Some(mut child) = self.postmaster.take() else {
            return;
        };
        let pid = child.id();
        // A stopped postmaster forks no new child while we look.
        sys::signal(pid, Signal::STOP);
        let children = children_of(pid);
        sys::signal(pid, Signal::KILL);
        for &c in &children {
            sys::signal(c, Signal::KILL);
        }
        let _ = child.wait();
        // The children are reaped by whoever adopted them; gone or a
        // zombie, they hold nothing any more.
        let limit = deadline(SERVER_TIMEOUT);
        for c in children {
            while !matches!(
                shm::pid::Pid::from_u32(c).and_then(crate::process_state),
                None | Some(b'Z') | Some(b'X')
            ) {
                assert!(
                    Instant::now() < limit,
                    "server process {c} survived SIGKILL"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.killed = true;
    }

    /// Starts the server again on the same directory and port, after
    /// [`Cluster::stop`] or [`Cluster::kill`], and waits until it accepts
    /// connections (data written before is there). Panics if it does not.
    pub fn start_again(&mut self) {
        if let Err(log) = self.launch() {
            panic!("the PostgreSQL server did not start again:\n{log}");
        }
    }

    /// [`Cluster::stop`], then [`Cluster::start_again`].
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("server.log")
    }

    /// A command that runs `program` of the server's binaries as the
    /// cluster's owner.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bindir.join(program));
        command.current_dir(&self.root).stdin(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn initdb(&self) {
        let pwfile = self.root.join("pwfile");
        self.write_owned(&pwfile, self.password.as_bytes(), 0o600);
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", USER, "-E", "UTF8", "--locale=C"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["--no-sync", "--no-instructions"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("run initdb");
        let _ = fs::remove_file(&pwfile);
        assert!(
            out.status.success(),
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn make_certificates(&self) {
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&self.root)
                .stdin(Stdio::null())
                .output()
                .expect("run openssl (apt-get install openssl)");
            assert!(
                out.status.success(),
                "openssl {args:?} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let mut ca = vec!["req", "-x509", "-new", "-nodes", "-days", "2"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
        ca.extend(["-subj", "/CN=procsync test authority"]);
        openssl(&ca);
        let mut csr = vec!["req", "-new", "-nodes"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
        csr.extend(["-subj", "/CN=127.0.0.1"]);
        openssl(&csr);
        fs::write(
            self.root.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("write the certificate's extensions");
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
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ]);
        // The server insists on a key only its owner can read.
        let key = fs::read(self.root.join("server.key")).expect("read the server's key");
        self.write_owned(&self.root.join("server.key"), &key, 0o600);
        self.write_owned(
            &self.root.join("server.crt"),
            &fs::read(self.root.join("server.crt")).expect("read the certificate"),
            0o644,
        );
    }

    /// Writes `path` with `mode`, owned by the cluster's owner.
    fn write_owned(&self, path: &Path, contents: &[u8], mode: u32) {
        let _ = fs::remove_file(path);
        fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("set a file's mode");
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown a file");
        }
    }

    /// Starts the server on `self.port` and waits until it accepts
    /// connections; the server's log if it ends first.
    fn launch(&mut self) -> Result<(), String> {
        assert!(self.postmaster.is_none(), "the server is running already");
        let log = fs::File::create(self.log_path()).expect("create the server's log");
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(self.data())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.root);
        for setting in [
            "listen_addresses=127.0.0.1",
            "fsync=off",
            "full_page_writes=off",
            "synchronous_commit=off",
            "shared_buffers=16MB",
            "max_connections=50",
            // Dynamic shared memory as files in the data directory: nothing
            // in /dev/shm to leak, whatever happens to the server.
            "dynamic_shared_memory_type=mmap",
        ] {
            command.arg("-c").arg(setting);
        }
        for setting in &self.settings {
            command.arg("-c").arg(setting);
        }
        if self.tls {
            command.args(["-c", "ssl=on"]);
            command.arg("-c").arg(format!(
                "ssl_cert_file={}",
                self.root.join("server.crt").display()
            ));
            command.arg("-c").arg(format!(
                "ssl_key_file={}",
                self.root.join("server.key").display()
            ));
        }
        command
            .stdout(log.try_clone().expect("share the log"))
            .stderr(log);
        // The kernel shuts the server down (SIGQUIT: immediate shutdown)
        // when the thread that started it ends, which is the spawner
        // thread, alive as long as this process.
        sys::die_with_parent(&mut command, Signal::QUIT);
        let child = spawn_from_long_lived_thread(command).expect("start the PostgreSQL server");
        self.postmaster = Some(child);
        let pid_file = self.data().join("postmaster.pid");
        let limit = deadline(SERVER_TIMEOUT);
        loop {
            let child = self.postmaster.as_mut().expect("started above");
            if let Ok(Some(status)) = child.try_wait() {
                self.postmaster = None;
                let mut text = String::new();
                let _ =
                    fs::File::open(self.log_path()).and_then(|mut f| f.read_to_string(&mut text));
                return Err(format!("exited with {status}; its log:\n{text}"));
            }
            // The eighth line of postmaster.pid says "ready" once the server
            // accepts connections; the first is its pid (a file left by a
            // killed server says "ready" too, with the dead one's pid).
            let status = fs::read_to_string(&pid_file).unwrap_or_default();
            let mut lines = status.lines().map(str::trim);
            let ours = lines.next() == Some(child.id().to_string().as_str());
            if ours && lines.nth(6) == Some("ready") {
                self.killed = false;
                return Ok(());
            }
            if Instant::now() >= limit {
                self.kill();
                return Err(format!("not ready within {SERVER_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.killed && self.postmaster.is_none() {
            // A killed server leaves a System V shared memory segment that
            // only its next start cleans up.
            let _ = self.launch();
        }
        self.stop();
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The directory of the server binaries: `pg_config --bindir`, else that
/// of an `initdb` on `PATH` (symbolic links followed), else the newest
/// `/usr/lib/postgresql/*/bin`. Panics saying how to install them.
pub fn server_bindir() -> PathBuf {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_initdb(&dir) {
            return dir;
        }
    }
    if let Some(dir) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).find_map(|dir| {
            let initdb = fs::canonicalize(dir.join("initdb")).ok()?;
            let dir = initdb.parent()?.to_path_buf();
            has_initdb(&dir).then_some(dir)
        })
    }) {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| {
                    let version = e.file_name().to_str()?.parse().ok()?;
                    let bin = e.path().join("bin");
                    has_initdb(&bin).then_some((version, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "the PostgreSQL server is not installed (no initdb from `pg_config --bindir` or in \
             /usr/lib/postgresql/*/bin): apt-get install postgresql"
        ),
    }
}

/// The `postgres` OS user's uid and gid.
fn postgres_user() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "running as root needs the `postgres` OS user (apt-get install postgresql makes it)"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a numeric id")
    };
    (id("-u"), id("-g"))
}

/// A new directory `procsync-pg-<pid>-<n>` under the temporary directory,
/// owned by `owner`.
fn new_directory(owner: Option<(u32, u32)>) -> PathBuf {
    let base = base_directory();
    for _ in 0..1000 {
        let path = base.join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            random_hex(4)
        ));
        match fs::create_dir(&path) {
            Ok(()) => {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o700))
                    .expect("set the cluster directory's mode");
                if let Some((uid, gid)) = owner {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                        .expect("give the cluster directory to postgres");
                }
                return path;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("create {}: {e}", path.display()),
        }
    }
    panic!("no free cluster directory name");
}

/// Where cluster directories go: the temporary directory, or `/tmp` when
/// the `postgres` user could not reach that one (a private `TMPDIR` of
/// root's).
fn base_directory() -> PathBuf {
    let temp = std::env::temp_dir();
    let reachable = temp
        .ancestors()
        .all(|dir| fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if reachable || !sys::is_root() {
        temp
    } else {
        PathBuf::from("/tmp")
    }
}

/// Removes the cluster directories of processes that are gone (a test
/// process SIGKILLed before its clusters' drop).
fn remove_abandoned_directories() {
    let Ok(dir) = fs::read_dir(base_directory()) else {
        return;
    };
    for entry in dir.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A TCP port on 127.0.0.1 that is free now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `bytes` random bytes as hex.
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
                return false;
            };
            // After the command name's last ')': state, then the parent.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(pid)
        })
        .collect()
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` from a thread that lives as long as this process, so
/// that a parent-death signal (which the kernel sends when the *thread*
/// that forked ends) comes only when the process ends, not when the test
/// thread that asked for the server returns.
fn spawn_from_long_lived_thread(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testkit-postgres-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the spawner thread");
        Mutex::new(tx)
    });
    let (reply, answer) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((command, reply))
        .expect("the spawner thread is alive");
    answer.recv().expect("the spawner thread answers")
}
