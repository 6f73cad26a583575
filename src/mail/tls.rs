//! TLS for the mail servers: the system's roots plus a private CA when configured (`[smtp]
//! ca_file`, `[imap] ca_file`), rustls through the platform verifier, and errors that say what
//! was wrong with a certificate and how to fix it. Verification is never turned off.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The certificates of a CA file (PEM), checked when the configuration is read.
pub fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "ca_file {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

/// A TLS connector trusting the system's roots and `extra`.
pub fn connector(extra: &[CertificateDer<'static>]) -> Result<tokio_rustls::TlsConnector, String> {
    Ok(tokio_rustls::TlsConnector::from(client_config(extra)?))
}

/// The rustls client configuration every TLS client of lifeboat's own uses (mail, the
/// PostgreSQL store): the platform's verifier, with `extra` roots. Verification is never off.
pub fn client_config(
    extra: &[CertificateDer<'static>],
) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra.to_vec(), provider.clone())
            .map_err(|e| format!("TLS setup: {e}"))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous() // rustls' name for "with this verifier": the platform's, not a bypass
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A TLS failure as a responder reads it: what is wrong with the server's certificate and what
/// to do, for the `[section]` of the configuration, and whether it was the certificate (which
/// trying again cannot change). Other failures pass through.
pub fn explain(detail: &str, section: &str) -> (String, bool) {
    let upper = section.to_uppercase();
    let has = |s: &str| detail.contains(s);
    let text = if has("UnknownIssuer")
        || has("not trusted")
        || has("self-signed")
        || has("self signed")
    {
        format!(
            "the server's certificate is not trusted ({detail}): if a private CA issued it, set ca_file in [{section}] (or LIFEBOAT_{upper}_CA_FILE) to that CA's certificate (PEM)"
        )
    } else if has("Expired") || has("expired") {
        format!("the server's certificate has expired ({detail}): the server must renew it")
    } else if has("NotValidForName") || has("not valid for name") {
        format!(
            "the server's certificate is not for this host name ({detail}): connect by the name the certificate carries"
        )
    } else {
        return (detail.to_string(), false);
    };
    (text, true)
}
