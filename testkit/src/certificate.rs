//! App certificates for tests: a self-signed RSA certificate with its private key, as the PEM text an
//! operator gives inboxd (and whose certificate part the simulator's app registration holds), valid
//! until a chosen time, so that expiry can be tested in seconds.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};

/// A self-signed RSA-2048 certificate for `CN=<subject>` valid from a day ago until `not_after`,
/// followed by its PKCS#8 private key: `(certificate PEM, key PEM)`.
pub fn certificate(subject: &str, not_after: DateTime<Utc>) -> anyhow::Result<(String, String)> {
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
    let key_pem = private.to_pkcs8_pem(LineEnding::LF)?.to_string();
    let key = rcgen::KeyPair::from_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256)
        .context("rcgen refused the RSA key")?;
    let mut params = rcgen::CertificateParams::new(vec![format!("{subject}.test")])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, subject);
    params.not_before = time::OffsetDateTime::from_unix_timestamp(
        (Utc::now() - chrono::Duration::days(1)).timestamp(),
    )?;
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after.timestamp())?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key_pem))
}

/// [`certificate`] as one PEM text, certificate first: what `inboxd app rotate --client-certificate-file` takes.
pub fn certificate_pem(subject: &str, not_after: DateTime<Utc>) -> anyhow::Result<String> {
    let (cert, key) = certificate(subject, not_after)?;
    Ok(format!("{cert}{key}"))
}
