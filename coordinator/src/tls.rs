//! TLS (rustls) for the coordinator's server and for its clients, from PEM
//! files: the server's certificate chain and key, and the CA that clients
//! trust (with an optional client certificate for mutual TLS).

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// Why a TLS file could not be used.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {what} {path}: {error}")]
pub struct TlsError {
    what: &'static str,
    path: PathBuf,
    error: std::io::Error,
}

/// A PEM file is small: a FIFO, a device or a huge file is refused (see
/// `moralsweep_userfs::read_bounded`).
fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    moralsweep_userfs::read_bounded(path, moralsweep_userfs::SPEC_LIMIT).map_err(|error| TlsError {
        what,
        path: path.to_path_buf(),
        error,
    })
}

/// The server side: certificate chain and key, and optionally the CA whose
/// client certificates are required.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerTlsConfig, TlsError> {
    let identity = Identity::from_pem(
        read("the TLS certificate", cert)?,
        read("the TLS key", key)?,
    );
    let mut cfg = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = client_ca {
        cfg = cfg.client_ca_root(Certificate::from_pem(read("the client CA", ca)?));
    }
    Ok(cfg)
}

/// The client side: the CA to trust (else the system's roots), the name
/// the server's certificate must carry, and an optional client identity.
pub fn client_config(
    ca: Option<&Path>,
    domain: Option<&str>,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientTlsConfig, TlsError> {
    let mut cfg = ClientTlsConfig::new();
    cfg = match ca {
        Some(ca) => cfg.ca_certificate(Certificate::from_pem(read("the TLS CA", ca)?)),
        None => cfg.with_enabled_roots(),
    };
    if let Some(d) = domain {
        cfg = cfg.domain_name(d);
    }
    if let Some((cert, key)) = identity {
        cfg = cfg.identity(Identity::from_pem(
            read("the client certificate", cert)?,
            read("the client key", key)?,
        ));
    }
    Ok(cfg)
}
