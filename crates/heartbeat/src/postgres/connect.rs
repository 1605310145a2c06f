//! Connecting to a PostgreSQL server by URL: see [`connect`].

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::postgres::config::{Host, SslMode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::HeartbeatError;

/// The TCP connect timeout when the URL gives no `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long sent data may go unacknowledged before the connection breaks,
/// when the URL gives no `tcp_user_timeout`.
pub const DEFAULT_TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// The server's `statement_timeout` when the URL's `options` set none.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to the PostgreSQL server at `url`, the way `libpq` reads one.
///
/// `postgresql://user[:password]@host[:port]/dbname?param=value&...`
/// (also `postgres://`). Every parameter the `postgres` crate knows is
/// passed on (`connect_timeout`, `options`, `application_name`,
/// `keepalives`, ...); the ones below are read here.
///
/// # Password
///
/// The first of: the URL's password; `PGPASSWORD`; the password file
/// (`passfile=` in the URL, else `PGPASSFILE`, else `~/.pgpass`), libpq's
/// format: lines `host:port:database:user:password`, `*` matching
/// anything in the first four fields, `\:` and `\\` escaping, `#`
/// starting a comment line, the first matching line winning. A host given
/// as a Unix socket directory matches `localhost`, a missing port `5432`,
/// a missing database the user's name. As libpq does, a password file
/// that its group or others may read (mode not within `0600`) is ignored;
/// the error of a connection that then fails says so.
///
/// The password never appears in an error message: errors name the URL
/// with its password replaced by `***`.
///
/// # TLS (`sslmode`)
///
/// Through rustls (pure Rust, no OpenSSL needed to build or run):
///
/// - absent or `disable`: no TLS. (libpq's default is `prefer`; here TLS
///   is used when the URL asks for it, never silently half-way.)
/// - `prefer`: TLS if the server offers it (certificate not verified),
///   else plain.
/// - `require`: TLS or no connection; the certificate is not verified
///   (encrypted against eavesdroppers, not against an active attacker), as
///   libpq does, unless `sslrootcert` is given, which makes it `verify-ca`,
///   as in libpq.
/// - `verify-ca`: TLS with a certificate signed by an authority of
///   `sslrootcert` (a PEM file; default `~/.postgresql/root.crt`).
/// - `verify-full`: `verify-ca`, and the certificate names the host of the
///   URL (its DNS name or IP address).
/// - `allow` is refused (the `postgres` crate cannot try plain first).
///
/// # Timeouts
///
/// A store that is down must not hang its caller:
///
/// - `connect_timeout` (seconds, as in libpq) bounds the connection to
///   each host (below); [`DEFAULT_CONNECT_TIMEOUT`] when the URL gives
///   none. A closed port fails at once, an unreachable host within it.
/// - `tcp_user_timeout` (milliseconds): data the server does not
///   acknowledge for that long (a host gone, a cable pulled) breaks the
///   connection; [`DEFAULT_TCP_USER_TIMEOUT`] when the URL gives none.
/// - The server's `statement_timeout` is set to
///   [`DEFAULT_STATEMENT_TIMEOUT`] unless the URL's `options` set one.
///
/// The whole connection (TCP, TLS, the startup exchange, authentication)
/// takes at most `connect_timeout` per host, as in libpq, also against a
/// server that accepts the TCP connection (its kernel does that) but never
/// answers, such as a hung or SIGSTOPped one: the attempt runs on a thread
/// of its own, left to end when the server answers or the connection
/// breaks. While it waits, a new `connect` to the same URL fails at once
/// (so a caller retrying every interval leaves one such thread, not one
/// per try).
///
/// Not bounded: a query on a connection whose server then hangs (the
/// `postgres` crate gives no deadline for an answer, and the server's
/// `statement_timeout` does not run in a hung server); a caller that must
/// not block then (a collector) queries from a thread of its own.
///
/// Errors are [`HeartbeatError::Store`], naming the URL without its
/// password.
pub fn connect(url: &str) -> Result<::postgres::Client, HeartbeatError> {
    let shown = redact(url);
    let fail = |what: &str, note: &str| {
        let shown = shown.clone();
        let what = what.to_string();
        let note = note.to_string();
        move |source: Box<dyn std::error::Error + Send + Sync>| HeartbeatError::Store {
            what: format!("{what} {shown}{note}"),
            source,
        }
    };
    let (rest, params) = take_params(url);
    let mut config = ::postgres::Config::from_str(&rest)
        .map_err(|e| fail("reading the connection URL", "")(e.into()))?;

    // Password.
    let mut note = String::new();
    if config.get_password().is_none() {
        if let Some(password) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
            config.password(password.as_encoded_bytes());
        } else if let Some(file) = passfile(params.get("passfile")) {
            match read_passfile(&file) {
                Passfile::Usable(text) => {
                    if let Some(password) = lookup(&text, &config) {
                        config.password(password);
                    }
                }
                Passfile::TooOpen(mode) => {
                    note = format!(
                        " (password file {} ignored: its mode {mode:o} lets group or others \
                         read it; it must be u=rw (0600) or less)",
                        file.display()
                    );
                }
                Passfile::Missing => {}
            }
        }
    }

    // Timeouts.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(DEFAULT_TCP_USER_TIMEOUT);
    }
    let options = config.get_options().unwrap_or("").to_string();
    if !options.contains("statement_timeout") {
        let ms = DEFAULT_STATEMENT_TIMEOUT.as_millis();
        config.options(format!("{options} -c statement_timeout={ms}").trim_start());
    }

    // TLS.
    let mode = params
        .get("sslmode")
        .map(String::as_str)
        .unwrap_or("disable");
    let roots = match params.get("sslrootcert") {
        Some(path) => Some(PathBuf::from(path)),
        None if matches!(mode, "verify-ca" | "verify-full") => {
            Some(home().join(".postgresql/root.crt"))
        }
        None => None,
    };
    let verify = match (mode, &roots) {
        ("disable", _) => {
            config.ssl_mode(SslMode::Disable);
            Verify::Nothing
        }
        ("prefer", _) => {
            config.ssl_mode(SslMode::Prefer);
            Verify::Nothing
        }
        ("require", None) => {
            config.ssl_mode(SslMode::Require);
            Verify::Nothing
        }
        ("require" | "verify-ca", Some(_)) => {
            config.ssl_mode(SslMode::Require);
            Verify::Authority
        }
        ("verify-full", Some(_)) => {
            config.ssl_mode(SslMode::Require);
            Verify::Full
        }
        (other, _) => {
            return Err(fail("connecting to", "")(
                format!(
                    "sslmode={other} is not supported (disable, prefer, require, verify-ca, \
                     verify-full)"
                )
                .into(),
            ))
        }
    };
    let tls = tls_config(verify, roots.as_deref()).map_err(fail("setting up TLS for", ""))?;

    // The whole connection (TCP, TLS, startup, authentication) within
    // connect_timeout per host, as libpq bounds it: the `postgres` crate
    // bounds only the TCP connect.
    let limit = config
        .get_connect_timeout()
        .copied()
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT)
        .saturating_mul(config.get_hosts().len().max(1) as u32);
    bounded(url, limit, move || {
        config.connect(MakeRustlsConnect::new(tls))
    })
    .map_err(|e| fail("connecting to", &note)(e))
}

type Outcome = Result<::postgres::Client, ::postgres::Error>;

/// Attempts that did not finish in time, by URL, each still waiting for
/// its server on a thread of its own.
static WAITING: Mutex<Vec<(String, mpsc::Receiver<Outcome>)>> = Mutex::new(Vec::new());

/// Runs `attempt` on a thread of its own and waits for it at most
/// `limit`. One that does not finish in time is left to finish (or fail)
/// when its server answers or its connection breaks, and is remembered:
/// while it waits, a new connection to the same URL fails at once instead
/// of leaving one more thread waiting, so a caller retrying every interval
/// piles up nothing.
fn bounded(
    url: &str,
    limit: Duration,
    attempt: impl FnOnce() -> Outcome + Send + 'static,
) -> Result<::postgres::Client, Box<dyn std::error::Error + Send + Sync>> {
    {
        let mut waiting = WAITING.lock().unwrap_or_else(|e| e.into_inner());
        // Forget the attempts that have finished since (their connection,
        // if any, is dropped: closed).
        waiting.retain(|(_, answer)| matches!(answer.try_recv(), Err(TryRecvError::Empty)));
        if waiting.iter().any(|(u, _)| u == url) {
            return Err("an earlier attempt is still waiting for this server to answer".into());
        }
    }
    let (tx, answer) = mpsc::channel();
    std::thread::Builder::new()
        .name("postgres-connect".into())
        .spawn(move || {
            let _ = tx.send(attempt());
        })?;
    match answer.recv_timeout(limit) {
        Ok(outcome) => Ok(outcome?),
        Err(RecvTimeoutError::Timeout) => {
            WAITING
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((url.to_string(), answer));
            Err(format!(
                "the server did not answer within {limit:?} (connect_timeout): it accepts \
                 connections but does not serve them"
            )
            .into())
        }
        Err(RecvTimeoutError::Disconnected) => Err("the connecting thread panicked".into()),
    }
}

/// Splits off the query parameters read here (`sslmode`, `sslrootcert`,
/// `passfile`, which the `postgres` crate does not know), returning the
/// URL with the others and their decoded values.
fn take_params(url: &str) -> (String, std::collections::HashMap<String, String>) {
    let mut ours = std::collections::HashMap::new();
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), ours);
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key);
        if matches!(key.as_str(), "sslmode" | "sslrootcert" | "passfile") {
            ours.insert(key, percent_decode(value));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, ours)
}

/// `%XX` escapes decoded (invalid ones kept as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if let (b'%', Some(Ok(b))) = (bytes[i], hex.map(|h| u8::from_str_radix(h, 16))) {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `url` with the password of its user-info replaced by `***`.
fn redact(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        // Not a URL: say nothing of it but its length.
        return format!("(a connection string of {} bytes)", url.len());
    };
    let mut shown = url.to_string();
    // Everything from the first `:` after the scheme to the last `@` of the
    // whole text: a password may hold `/`, `?` or `@` (libpq wants them
    // percent-encoded, but an error must not show a mistyped one). An `@`
    // in the query makes it hide more than the password: safe.
    if let Some(at) = shown.rfind('@').filter(|&at| at > start) {
        if let Some(colon) = shown[start..at].find(':').map(|i| start + i) {
            shown.replace_range(colon + 1..at, "***");
        }
    }
    // `?password=...` and `&password=...`.
    let mut from = 0;
    while let Some(found) = shown[from..].find("password=").map(|i| from + i) {
        let value = found + "password=".len();
        let starts_parameter = found > 0 && matches!(shown.as_bytes()[found - 1], b'?' | b'&');
        if starts_parameter {
            let end = shown[value..].find('&').map_or(shown.len(), |i| value + i);
            shown.replace_range(value..end, "***");
        }
        from = value;
    }
    shown
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// The password file to read: `passfile=`, `PGPASSFILE`, `~/.pgpass`.
fn passfile(param: Option<&String>) -> Option<PathBuf> {
    if let Some(path) = param {
        return Some(PathBuf::from(path));
    }
    if let Some(path) = std::env::var_os("PGPASSFILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass"))
}

enum Passfile {
    Usable(String),
    /// Group or others may read it: ignored, as libpq does.
    TooOpen(u32),
    Missing,
}

fn read_passfile(path: &Path) -> Passfile {
    let Ok(meta) = fs::metadata(path) else {
        return Passfile::Missing;
    };
    if !meta.is_file() {
        return Passfile::Missing;
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Passfile::TooOpen(mode);
    }
    fs::read_to_string(path).map_or(Passfile::Missing, Passfile::Usable)
}

/// The password of the first line of a password file that matches the
/// connection's first host, its port, database and user.
fn lookup(text: &str, config: &::postgres::Config) -> Option<String> {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        // A socket directory (or none: the default socket) is "localhost".
        _ => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config
        .get_user()
        .map(str::to_string)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default();
    let database = config.get_dbname().unwrap_or(&user).to_string();
    let wanted = [
        host.as_str(),
        port.as_str(),
        database.as_str(),
        user.as_str(),
    ];
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| {
            let (fields, password) = split_passfile_line(line)?;
            fields
                .iter()
                .zip(wanted)
                .all(|((value, wildcard), want)| *wildcard || value == want)
                .then_some(password)
        })
}

/// A password file line's four fields (each unescaped, with whether it is
/// the wildcard `*`) and its password (the rest, unescaped).
#[allow(clippy::type_complexity)]
fn split_passfile_line(line: &str) -> Option<([(String, bool); 4], String)> {
    let mut fields: Vec<(String, bool)> = Vec::with_capacity(4);
    let mut current = String::new();
    let mut raw = String::new();
    let mut chars = line.chars();
    while fields.len() < 4 {
        match chars.next()? {
            '\\' => {
                let c = chars.next()?;
                current.push(c);
                raw.push('\\');
                raw.push(c);
            }
            ':' => {
                fields.push((std::mem::take(&mut current), raw == "*"));
                raw.clear();
            }
            c => {
                current.push(c);
                raw.push(c);
            }
        }
    }
    let mut password = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => password.push(chars.next().unwrap_or('\\')),
            c => password.push(c),
        }
    }
    let fields: [(String, bool); 4] = fields.try_into().ok()?;
    Some((fields, password))
}

#[derive(Clone, Copy)]
enum Verify {
    /// Encryption only: any certificate (libpq's `require`).
    Nothing,
    /// Signed by one of the roots, whatever name it carries.
    Authority,
    /// Signed by one of the roots and naming the host.
    Full,
}

fn tls_config(
    verify: Verify,
    roots: Option<&Path>,
) -> Result<ClientConfig, Box<dyn std::error::Error + Send + Sync>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(AnyCertificate(provider.signature_verification_algorithms)),
        Verify::Authority | Verify::Full => {
            let path = roots.ok_or("no sslrootcert")?;
            let mut store = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?
            {
                store.add(cert.map_err(|e| format!("sslrootcert {}: {e}", path.display()))?)?;
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider).build()?;
            match verify {
                Verify::Full => webpki,
                _ => Arc::new(AnyName(webpki)),
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// Accepts any certificate, but checks that the server holds its key (the
/// handshake's signatures): libpq's `sslmode=require`.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A full verification that forgives only a name mismatch: `verify-ca`.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgresql://u:s3cr%3At@h:5/db?sslmode=require"),
            "postgresql://u:***@h:5/db?sslmode=require"
        );
        assert_eq!(redact("postgresql://u@h/db"), "postgresql://u@h/db");
        assert_eq!(redact("postgresql://h/db"), "postgresql://h/db");
        // Review 10: a password in the query, or with `/` or `@` in it.
        assert_eq!(
            redact("postgresql://u@h/db?sslmode=require&password=s3cret&x=1"),
            "postgresql://u@h/db?sslmode=require&password=***&x=1"
        );
        assert_eq!(
            redact("postgresql://u@h/db?password=s3cret"),
            "postgresql://u@h/db?password=***"
        );
        assert_eq!(
            redact("postgresql://u:pa/ss@h/db"),
            "postgresql://u:***@h/db"
        );
        assert_eq!(
            redact("postgresql://u:p@ss@h/db"),
            "postgresql://u:***@h/db"
        );
    }

    #[test]
    fn passfile_lines_follow_libpq() {
        let (fields, password) = split_passfile_line(r"h\:x:*:db:u:pa\:ss\\w:rd").unwrap();
        assert_eq!(fields[0], ("h:x".to_string(), false));
        assert_eq!(fields[1], ("*".to_string(), true));
        assert_eq!(password, r"pa:ss\w:rd");
        let (fields, _) = split_passfile_line(r"\*:1:2:3:p").unwrap();
        assert_eq!(fields[0], ("*".to_string(), false));
        assert!(split_passfile_line("a:b:c").is_none());
    }

    #[test]
    fn our_parameters_are_taken_out() {
        let (rest, ours) =
            take_params("postgresql://h/db?sslmode=require&application_name=x&sslrootcert=%2Fa");
        assert_eq!(rest, "postgresql://h/db?application_name=x");
        assert_eq!(ours["sslmode"], "require");
        assert_eq!(ours["sslrootcert"], "/a");
    }
}
