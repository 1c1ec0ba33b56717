//! Loads the broker's TLS certificate and key (PEM files) for its gRPC port.

use std::path::Path;

use anyhow::{Context, Result, bail};
use tonic::transport::{Identity, ServerTlsConfig};

/// The TLS settings when both files are configured; `None` for plaintext.
pub fn load(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<ServerTlsConfig>> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        (Some(_), None) => bail!("broker.tls_cert is set but broker.tls_key is not; TLS needs both"),
        (None, Some(_)) => bail!("broker.tls_key is set but broker.tls_cert is not; TLS needs both"),
    };
    let read = |p: &Path, what: &str| -> Result<Vec<u8>> {
        let pem = std::fs::read(p).with_context(|| format!("cannot read the TLS {what} {}", p.display()))?;
        if !String::from_utf8_lossy(&pem).contains("-----BEGIN ") {
            bail!("the TLS {what} {} is not a PEM file", p.display());
        }
        Ok(pem)
    };
    let identity = Identity::from_pem(read(cert, "certificate")?, read(key, "private key")?);
    Ok(Some(ServerTlsConfig::new().identity(identity)))
}
