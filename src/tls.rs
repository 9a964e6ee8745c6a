//! TLS on the client port, with redis-server's option names: the settings,
//! the acceptor built from them (rustls with the ring provider, no
//! OpenSSL), and its swap when `CONFIG SET` changes a file, as operators
//! rotate certificates. A swap affects new handshakes only: connected
//! clients keep the session they negotiated.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig, SupportedProtocolVersion};

use crate::config::Config;

/// Redis's reply when `CONFIG SET` of a TLS file cannot be applied (the
/// reason goes to the log).
pub(crate) const RELOAD_FAILED: &str = "Unable to update TLS configuration. Check server logs.";

/// `tls-auth-clients`: whether a client must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthClients {
    /// Required, and checked against the CA (Redis's default).
    Yes,
    /// Not asked for.
    No,
    /// Checked against the CA if the client sends one.
    Optional,
}

impl AuthClients {
    /// Parses `yes`, `no` or `optional` (any case).
    pub(crate) fn parse(s: &str) -> Option<AuthClients> {
        match s.to_ascii_lowercase().as_str() {
            "yes" => Some(AuthClients::Yes),
            "no" => Some(AuthClients::No),
            "optional" => Some(AuthClients::Optional),
            _ => None,
        }
    }

    /// The name CONFIG GET shows.
    pub(crate) fn name(self) -> &'static str {
        match self {
            AuthClients::Yes => "yes",
            AuthClients::No => "no",
            AuthClients::Optional => "optional",
        }
    }
}

/// The TLS settings in force (CONFIG SET changes them).
#[derive(Debug, Clone)]
pub(crate) struct TlsSettings {
    pub(crate) cert_file: Option<String>,
    pub(crate) key_file: Option<String>,
    pub(crate) ca_cert_file: Option<String>,
    pub(crate) ca_cert_dir: Option<String>,
    pub(crate) auth_clients: AuthClients,
    pub(crate) protocols: Option<String>,
    pub(crate) replication: bool,
    pub(crate) cluster: bool,
}

impl TlsSettings {
    /// The settings given at start.
    pub(crate) fn from_config(c: &Config) -> TlsSettings {
        TlsSettings {
            cert_file: c.tls_cert_file.clone(),
            key_file: c.tls_key_file.clone(),
            ca_cert_file: c.tls_ca_cert_file.clone(),
            ca_cert_dir: c.tls_ca_cert_dir.clone(),
            // clap allows only the three names.
            auth_clients: AuthClients::parse(&c.tls_auth_clients).unwrap_or(AuthClients::Yes),
            protocols: c.tls_protocols.clone(),
            replication: c.tls_replication,
            cluster: c.tls_cluster,
        }
    }
}

/// Whether TLS must be configured: as in Redis, when a TLS port is set or
/// node-to-node traffic is to use TLS.
fn wanted(tls_port: u16, s: &TlsSettings) -> bool {
    tls_port != 0 || s.replication || s.cluster
}

/// The TLS state shared by every connection.
pub struct Tls {
    /// The TLS port (bound, with `--tls-port`; 0 without).
    pub(crate) port: AtomicU64,
    settings: Mutex<TlsSettings>,
    /// The acceptor for new handshakes; `None` while TLS is off.
    acceptor: RwLock<Option<TlsAcceptor>>,
    /// Handshakes that failed (plain clients on the TLS port, bad or
    /// missing client certificates), for INFO.
    pub(crate) handshake_failures: AtomicU64,
}

impl Tls {
    /// The state at start, without an acceptor until [`Tls::install`].
    pub(crate) fn new(config: &Config) -> Tls {
        Tls {
            port: AtomicU64::new(u64::from(config.tls_port)),
            settings: Mutex::new(TlsSettings::from_config(config)),
            acceptor: RwLock::new(None),
            handshake_failures: AtomicU64::new(0),
        }
    }

    /// Puts the acceptor built at start (by [`configure`]) in force.
    pub fn install(&self, acceptor: Option<TlsAcceptor>) {
        if let Ok(mut a) = self.acceptor.write() {
            *a = acceptor;
        }
    }

    /// The acceptor for a new TLS connection.
    pub(crate) fn acceptor(&self) -> Option<TlsAcceptor> {
        self.acceptor
            .read()
            .map_or_else(|e| e.into_inner().clone(), |a| a.clone())
    }

    /// A copy of the settings in force.
    pub(crate) fn settings(&self) -> TlsSettings {
        self.settings
            .lock()
            .map_or_else(|e| e.into_inner().clone(), |s| s.clone())
    }

    /// Builds an acceptor from `new` and puts both in force; on failure
    /// logs why and keeps the old ones (`CONFIG SET tls-...`).
    ///
    /// # Errors
    ///
    /// [`RELOAD_FAILED`], Redis's reply; the reason is in the log.
    pub(crate) fn reconfigure(&self, new: TlsSettings) -> Result<(), &'static str> {
        let port = u16::try_from(self.port.load(Ordering::Relaxed)).unwrap_or(0);
        let acceptor = if wanted(port, &new) {
            match build(&new) {
                Ok(cfg) => Some(TlsAcceptor::from(cfg)),
                Err(why) => {
                    tracing::warn!("{why}");
                    return Err(RELOAD_FAILED);
                }
            }
        } else {
            None
        };
        // Settings and acceptor change together: lock both in one order.
        let Ok(mut s) = self.settings.lock() else {
            return Err(RELOAD_FAILED);
        };
        let Ok(mut a) = self.acceptor.write() else {
            return Err(RELOAD_FAILED);
        };
        *s = new;
        *a = acceptor;
        if a.is_some() {
            tracing::info!("TLS configuration loaded");
        }
        Ok(())
    }
}

/// The acceptor for the configuration at start, or `None` if TLS is off.
///
/// # Errors
///
/// Why TLS cannot be configured (a missing or bad file, a missing CA).
pub fn configure(config: &Config) -> Result<Option<TlsAcceptor>, String> {
    let settings = TlsSettings::from_config(config);
    if !wanted(config.tls_port, &settings) {
        return Ok(None);
    }
    build(&settings).map(|cfg| Some(TlsAcceptor::from(cfg)))
}

/// Builds the server's TLS configuration; the errors are Redis's log lines
/// where it has one.
pub(crate) fn build(s: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let cert_file = s
        .cert_file
        .as_deref()
        .ok_or("No tls-cert-file configured!")?;
    let key_file = s.key_file.as_deref().ok_or("No tls-key-file configured!")?;
    if (s.auth_clients != AuthClients::No || s.cluster || s.replication)
        && s.ca_cert_file.is_none()
        && s.ca_cert_dir.is_none()
    {
        return Err(
            "Either tls-ca-cert-file or tls-ca-cert-dir must be specified when \
                    tls-cluster, tls-replication or tls-auth-clients are enabled!"
                .into(),
        );
    }
    let versions = protocols(s.protocols.as_deref())?;
    let certs = read_certs(cert_file)
        .map_err(|why| format!("Failed to load certificate: {cert_file}: {why}"))?;
    let key = std::fs::read(key_file)
        .map_err(|e| e.to_string())
        .and_then(|pem| PrivateKeyDer::from_pem_slice(&pem).map_err(|e| pem_error(&e)))
        .map_err(|why| format!("Failed to load private key: {key_file}: {why}"))?;
    let roots = ca_roots(s)
        .map_err(|why| format!("Failed to configure CA certificate(s) file/directory: {why}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("Invalid tls-protocols: {e}"))?;
    let builder = match (s.auth_clients, roots) {
        (AuthClients::No, _) | (_, None) => builder.with_no_client_auth(),
        (auth, Some(roots)) => {
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if auth == AuthClients::Optional {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(
                v.build()
                    .map_err(|e| format!("Failed to configure client verification: {e}"))?,
            )
        }
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "Failed to load certificate: {cert_file}: does not match the key in {key_file}: {e}"
        )
    })?;
    Ok(Arc::new(config))
}

/// `tls-protocols`: Redis's names, any case. rustls has no TLSv1 or
/// TLSv1.1; they are skipped (with a warning) so a redis.conf listing
/// every version still works, but naming only those is an error.
fn protocols(spec: Option<&str>) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let Some(spec) = spec else {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    };
    let mut v: Vec<&'static SupportedProtocolVersion> = Vec::new();
    for word in spec.split_whitespace() {
        match word.to_ascii_lowercase().as_str() {
            "tlsv1.3" => v.push(&rustls::version::TLS13),
            "tlsv1.2" => v.push(&rustls::version::TLS12),
            "tlsv1" | "tlsv1.1" => {
                tracing::warn!("{word} in tls-protocols is not supported and is ignored");
            }
            _ => {
                return Err("Invalid tls-protocols specified. \
                            Use a combination of 'TLSv1', 'TLSv1.1', 'TLSv1.2' and 'TLSv1.3'."
                    .into());
            }
        }
    }
    if v.is_empty() {
        return Err(
            "tls-protocols names no version delayd supports (TLSv1.2, TLSv1.3)".to_string(),
        );
    }
    Ok(v)
}

/// Every certificate in a PEM file (at least one).
fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&e))?;
    if certs.is_empty() {
        return Err("no certificate in the file".into());
    }
    Ok(certs)
}

/// The CA certificates of `tls-ca-cert-file` and every PEM file in
/// `tls-ca-cert-dir`; `None` if neither is set.
fn ca_roots(s: &TlsSettings) -> Result<Option<RootCertStore>, String> {
    if s.ca_cert_file.is_none() && s.ca_cert_dir.is_none() {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    let mut add = |path: &str| -> Result<(), String> {
        for c in read_certs(path).map_err(|why| format!("{path}: {why}"))? {
            roots.add(c).map_err(|e| format!("{path}: {e}"))?;
        }
        Ok(())
    };
    if let Some(f) = &s.ca_cert_file {
        add(f)?;
    }
    if let Some(d) = &s.ca_cert_dir {
        let entries = std::fs::read_dir(d).map_err(|e| format!("{d}: {e}"))?;
        for e in entries.flatten() {
            let path = e.path();
            // OpenSSL's CA directory holds hash links and other files:
            // take every file that holds certificates, skip the rest.
            if path.is_file()
                && let Some(p) = path.to_str()
                && let Ok(pem) = std::fs::read(p)
                && CertificateDer::pem_slice_iter(&pem).next().is_some()
            {
                add(p)?;
            }
        }
    }
    if roots.is_empty() {
        return Err("no CA certificate found".into());
    }
    Ok(Some(roots))
}

fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM section of the right kind".into(),
        other => format!("bad PEM: {other:?}"),
    }
}
