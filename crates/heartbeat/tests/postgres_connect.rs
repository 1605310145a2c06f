//! Connecting to PostgreSQL by URL (`heartbeat::postgres::connect`)
//! against real throwaway clusters (`testkit::postgres::Cluster`), and the
//! clusters themselves: restarts keep data, nothing outlives a test.

#![cfg(feature = "postgres")]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use heartbeat::postgres::{connect, DEFAULT_CONNECT_TIMEOUT};
use testkit::postgres::Cluster;
use testkit::{helper_args, helper_report, park_until_killed, wait_until, HELPER_ENV};

mod common;
use common::TempDir;

/// Held by the tests that set or depend on the absence of `PGPASSWORD`
/// and `PGPASSFILE` (the environment is the whole process's).
static ENVIRONMENT: Mutex<()> = Mutex::new(());

fn environment() -> std::sync::MutexGuard<'static, ()> {
    ENVIRONMENT.lock().unwrap_or_else(|e| e.into_inner())
}

fn gone(pid: u32) -> bool {
    matches!(
        shm::pid::Pid::from_u32(pid).and_then(testkit::process_state),
        None | Some(b'Z') | Some(b'X')
    )
}

/// The error of a connection that must fail.
fn refused(url: &str) -> heartbeat::HeartbeatError {
    match connect(url) {
        Ok(_) => panic!("connected"),
        Err(e) => e,
    }
}

fn uses_tls(client: &mut postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_password_in_the_url_connects() {
    let cluster = Cluster::start();
    let mut client = connect(&cluster.url()).unwrap();
    let one: i32 = client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
    assert!(!uses_tls(&mut client), "no sslmode: no TLS");
    let timeout: String = client
        .query_one("SHOW statement_timeout", &[])
        .unwrap()
        .get(0);
    assert_eq!(timeout, "30s", "the default statement timeout is set");
}

#[test]
fn a_wrong_password_is_a_clear_error_that_does_not_show_it() {
    let cluster = Cluster::start();
    let secret = "not-the-Password-7f3a";
    let url = cluster.url().replace(cluster.password(), secret);
    let err = refused(&url);
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains("password authentication failed"),
        "unclear: {shown}"
    );
    assert!(
        shown.contains("tester:***@127.0.0.1"),
        "no server named: {shown}"
    );
    assert!(!shown.contains(secret), "the password shows: {shown}");
}

#[test]
fn pgpassword_gives_the_password_when_the_url_has_none() {
    let cluster = Cluster::start();
    let _env = environment();
    assert!(connect(&cluster.url_without_password()).is_err());
    std::env::set_var("PGPASSWORD", cluster.password());
    let result = connect(&cluster.url_without_password());
    std::env::remove_var("PGPASSWORD");
    result.unwrap().query_one("SELECT 1", &[]).unwrap();
}

#[test]
fn a_passfile_is_used_when_private_and_ignored_like_libpq_when_not() {
    let cluster = Cluster::start();
    let dir = TempDir::new("pgpass");
    let file = dir.0.join("pgpass");
    // Comments, a line for another port, escapes: the first match wins.
    std::fs::write(
        &file,
        format!(
            "# test\n127.0.0.1:1:*:tester:wrong\n127.0.0.1:{}:*:{}:{}\n*:*:*:*:wrong\n",
            cluster.port(),
            r"t\ester",
            cluster.password()
        ),
    )
    .unwrap();
    let _env = environment();
    let url = format!(
        "{}?passfile={}",
        cluster.url_without_password(),
        file.display()
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    connect(&url).unwrap().query_one("SELECT 1", &[]).unwrap();

    // PGPASSFILE names it too.
    std::env::set_var("PGPASSFILE", &file);
    let by_env = connect(&cluster.url_without_password());
    std::env::remove_var("PGPASSFILE");
    by_env.unwrap();

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = refused(&url).to_string();
    assert!(
        err.contains("ignored"),
        "no word of the ignored file: {err}"
    );
    assert!(
        !err.contains(cluster.password()),
        "the password shows: {err}"
    );
}

#[test]
fn sslmode_require_encrypts_and_verify_full_checks_the_certificate() {
    let cluster = Cluster::start_tls();
    let mut client = connect(&format!("{}?sslmode=require", cluster.url())).unwrap();
    assert!(uses_tls(&mut client));
    let mut plain = connect(&cluster.url()).unwrap();
    assert!(!uses_tls(&mut plain), "no sslmode: no TLS");
    let mut prefer = connect(&format!("{}?sslmode=prefer", cluster.url())).unwrap();
    assert!(uses_tls(&mut prefer));

    let ca = cluster.ca_cert().unwrap();
    let verified = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.url(),
        ca.display()
    );
    assert!(uses_tls(&mut connect(&verified).unwrap()));
    // Another authority (here the server's own certificate, which signed
    // nothing): refused.
    let wrong = cluster.dir().join("server.crt");
    let err = refused(&format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.url(),
        wrong.display()
    ))
    .to_string();
    assert!(err.contains("TLS handshake"), "{err}");
    assert!(
        !err.contains(cluster.password()),
        "the password shows: {err}"
    );
    // require with an sslrootcert verifies the authority, as in libpq.
    let checked = |root: &std::path::Path| {
        connect(&format!(
            "{}?sslmode=require&sslrootcert={}",
            cluster.url(),
            root.display()
        ))
    };
    assert!(uses_tls(&mut checked(&ca).unwrap()));
    assert!(checked(&wrong).is_err());
}

#[test]
fn sslmode_require_against_a_server_without_tls_fails() {
    let cluster = Cluster::start();
    let err = refused(&format!("{}?sslmode=require", cluster.url()));
    assert!(err.to_string().contains("TLS"), "{err}");
    // prefer falls back to plain.
    let mut client = connect(&format!("{}?sslmode=prefer", cluster.url())).unwrap();
    assert!(!uses_tls(&mut client));
}

#[test]
fn a_server_that_is_down_fails_within_the_timeout() {
    let mut cluster = Cluster::start();
    cluster.kill();
    let started = Instant::now();
    let err = refused(&cluster.url());
    assert!(
        started.elapsed() < DEFAULT_CONNECT_TIMEOUT + Duration::from_secs(1),
        "took {:?}: {err}",
        started.elapsed()
    );
    assert!(!err.to_string().contains(cluster.password()));
}

#[test]
fn a_frozen_server_fails_the_connect_within_its_timeout_and_again_at_once() {
    let cluster = Cluster::start();
    let url = format!("{}?connect_timeout=1", cluster.url());
    cluster.pause();
    // Run in a thread so that a connect that hangs fails the test instead.
    let attempt = |url: &str| {
        let url = url.to_string();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let started = Instant::now();
            let outcome = connect(&url).map(|_| ()).map_err(|e| e.to_string());
            let _ = tx.send((started.elapsed(), outcome));
        });
        rx.recv_timeout(testkit::GENEROUS)
            .expect("connect to a frozen server hangs")
    };
    let (took, outcome) = attempt(&url);
    let err = outcome.unwrap_err();
    assert!(took < Duration::from_secs(3), "took {took:?}: {err}");
    assert!(err.contains("did not answer"), "{err}");
    assert!(!err.contains(cluster.password()), "{err}");
    // The attempt still waiting for the server is not repeated: the next
    // one fails at once, so a caller retrying every second piles up
    // nothing.
    let (took, outcome) = attempt(&url);
    assert!(took < Duration::from_millis(500), "took {took:?}");
    assert!(outcome.unwrap_err().contains("still waiting"));
    // Thawed, the store is usable again.
    cluster.resume();
    let limit = testkit::deadline(testkit::GENEROUS);
    while let (_, Err(e)) = attempt(&url) {
        assert!(Instant::now() < limit, "never connected again: {e}");
    }
}

#[test]
fn a_cluster_keeps_its_data_across_a_restart_and_a_crash() {
    let mut cluster = Cluster::start();
    let port = cluster.port();
    let mut client = connect(&cluster.url()).unwrap();
    client
        .batch_execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)")
        .unwrap();
    drop(client);
    cluster.restart();
    assert_eq!(cluster.port(), port);
    let mut client = connect(&cluster.url()).unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM kept", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // A commit that waits for its WAL record survives a SIGKILL.
    client
        .batch_execute("SET synchronous_commit = on; INSERT INTO kept VALUES (2)")
        .unwrap();
    let pids = cluster.processes();
    cluster.kill();
    assert!(pids.iter().all(|&p| gone(p)), "a server process survived");
    assert!(
        client.query_one("SELECT 1", &[]).is_err(),
        "the store is down"
    );
    cluster.start_again();
    let mut client = connect(&cluster.url()).unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM kept", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[test]
fn dropping_a_cluster_leaves_no_process_and_no_directory() {
    for killed_first in [false, true] {
        let mut cluster = Cluster::start();
        let _client = connect(&cluster.url()).unwrap();
        let pids = cluster.processes();
        assert!(pids.len() > 2, "the postmaster and its children: {pids:?}");
        let dir = cluster.dir().to_path_buf();
        if killed_first {
            cluster.kill();
        }
        drop(cluster);
        assert!(pids.iter().all(|&p| gone(p)), "a server process survived");
        assert!(!dir.exists(), "{} is left", dir.display());
    }
}

/// Helper process for the next test: starts a cluster, says where, and
/// waits to be killed.
#[test]
fn helper_start_a_cluster_and_wait() {
    if helper_args().is_none() {
        return;
    }
    let cluster = Cluster::start();
    helper_report("dir", cluster.dir().display());
    helper_report("pid", cluster.pid().unwrap());
    park_until_killed();
}

#[test]
fn a_sigkilled_test_process_leaves_no_server_and_its_directory_goes_at_the_next_start() {
    let exe = std::env::current_exe().unwrap();
    let mut helper = Command::new(exe)
        .args([
            "helper_start_a_cluster_and_wait",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "go")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(helper.stdout.take().unwrap()).lines();
    let mut report = |key: &str| -> String {
        let prefix = format!("helper-report {key}=");
        loop {
            let line = lines.next().expect("the helper reports").unwrap();
            if let Some((_, value)) = line.split_once(&prefix) {
                return value.trim().to_string();
            }
        }
    };
    let dir = std::path::PathBuf::from(report("dir"));
    let pid: u32 = report("pid").parse().unwrap();
    helper.kill().unwrap();
    helper.wait().unwrap();
    wait_until("the server ends with the test process", || gone(pid));
    assert!(dir.exists(), "nobody was left to remove it");
    let _next = Cluster::start();
    assert!(!dir.exists(), "{} was not cleaned up", dir.display());
}
