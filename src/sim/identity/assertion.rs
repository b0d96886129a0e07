//! App credentials beyond the first secret: more client secrets (as Azure holds several, so a
//! rotation overlaps) and certificates, whose client assertions (RFC 7523 JWTs, RS256, named by
//! `x5t` or `x5t#S256`) the token endpoint verifies as Entra does: the key must be registered on
//! the app and not expired (AADSTS700027 with Microsoft's reason text), the signature must verify
//! (AADSTS700027), `iss` and `sub` must be the client id (AADSTS700021), `aud` the token endpoint
//! and the time range must hold (AADSTS700024). Every successful client authentication is
//! counted per credential, so tests see which credential each token request used.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rsa::RsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use x509_cert::der::{Decode as _, Encode as _};

use super::errors::StsError;

/// A certificate registered on an app: its public key and validity.
#[derive(Clone)]
pub struct SimCertificate {
    /// SHA-1 thumbprint, upper-case hex (as the Azure portal shows it).
    pub thumbprint: String,
    x5t: String,
    x5t_s256: String,
    key: RsaPublicKey,
    /// Validity.
    pub not_before: DateTime<Utc>,
    /// Expiry: assertions signed by it are refused after this.
    pub not_after: DateTime<Utc>,
}

/// A further client secret of an app.
#[derive(Clone)]
pub struct SimSecret {
    /// The value.
    pub value: String,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
}

fn utc(time: &x509_cert::time::Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(i64::try_from(time.to_unix_duration().as_secs()).ok()?, 0)
}

impl SimCertificate {
    /// Parses the certificate (the public part an admin uploads; a private key beside it is
    /// ignored).
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let mut reader = std::io::BufReader::new(pem.as_bytes());
        let der = rustls_pemfile::certs(&mut reader)
            .next()
            .ok_or("no CERTIFICATE block")?
            .map_err(|e| e.to_string())?;
        let cert = x509_cert::Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| e.to_string())?;
        let key = RsaPublicKey::from_public_key_der(&spki).map_err(|e| e.to_string())?;
        let sha1: [u8; 20] = Sha1::digest(der.as_ref()).into();
        let validity = &cert.tbs_certificate.validity;
        Ok(SimCertificate {
            thumbprint: hex::encode_upper(sha1),
            x5t: URL_SAFE_NO_PAD.encode(sha1),
            x5t_s256: URL_SAFE_NO_PAD.encode(Sha256::digest(der.as_ref())),
            key,
            not_before: utc(&validity.not_before).ok_or("validity out of range")?,
            not_after: utc(&validity.not_after).ok_or("validity out of range")?,
        })
    }
}

/// The label a credential is counted under: `cert:<thumbprint>` or `secret:<first 3 characters>…`
/// plus a short hash (Azure shows the first characters as the secret's hint).
pub fn secret_label(value: &str) -> String {
    let hint: String = value.chars().take(3).collect();
    let hash = hex::encode(&Sha256::digest(value.as_bytes())[..4]);
    format!("secret:{hint}~{hash}")
}

/// Checks a client assertion for `client_id` at `token_url` against the app's certificates at
/// `now`; answers the label of the certificate that signed it.
pub fn verify(
    assertion: &str,
    client_id: &str,
    token_url_suffix: &str,
    certificates: &[SimCertificate],
    now: DateTime<Utc>,
) -> Result<String, StsError> {
    let invalid = |detail: &str| {
        let mut e = StsError::new(700027, &[]);
        e.message = format!("Client assertion failed signature validation. {detail}");
        e
    };
    let mut parts = assertion.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("The assertion is not a compact JWS."));
    };
    let decode = |part: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    let (Some(header), Some(claims)) = (decode(h), decode(c)) else {
        return Err(invalid("The assertion's header or claims are not JSON."));
    };
    let named = header["x5t#S256"]
        .as_str()
        .map(|t| (t, true))
        .or_else(|| header["x5t"].as_str().map(|t| (t, false)));
    let Some((named, sha256)) = named else {
        return Err(invalid(
            "The assertion's header names no key (x5t or x5t#S256).",
        ));
    };
    let Some(cert) = certificates.iter().find(|c| {
        if sha256 {
            c.x5t_s256 == named
        } else {
            c.x5t == named
        }
    }) else {
        return Err(invalid(&format!(
            "[Reason - The key was not found., Thumbprint of key used by client: '{named}'. Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]"
        )));
    };
    if cert.not_after <= now {
        let mut e = StsError::new(700027, &[]);
        e.message = format!(
            "Client assertion contains an invalid signature. [Reason - The key used is expired., Thumbprint of key used by client: '{}', Found key 'Start={}, End={}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]",
            cert.thumbprint,
            cert.not_before.format("%m/%d/%Y %H:%M:%S"),
            cert.not_after.format("%m/%d/%Y %H:%M:%S"),
        );
        return Err(e);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|bytes| Signature::try_from(bytes.as_slice()).ok());
    let verified = signature.is_some_and(|sig| {
        VerifyingKey::<Sha256>::new(cert.key.clone())
            .verify(format!("{h}.{c}").as_bytes(), &sig)
            .is_ok()
    });
    if header["alg"] != "RS256" || !verified {
        let mut e = StsError::new(700027, &[]);
        e.message = format!(
            "Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '{}']",
            cert.thumbprint
        );
        return Err(e);
    }
    if claims["iss"] != client_id || claims["sub"] != client_id {
        let mut e = StsError::new(700021, &[]);
        e.message = format!(
            "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials . (client_id: {client_id})"
        );
        return Err(e);
    }
    let at = now.timestamp();
    let exp = claims["exp"].as_i64().unwrap_or(0);
    let nbf = claims["nbf"].as_i64().unwrap_or(at);
    if exp <= at - 300 || nbf > at + 300 {
        let mut e = StsError::new(700024, &[]);
        e.message = "Client assertion is not within its valid time range.".into();
        return Err(e);
    }
    if !claims["aud"]
        .as_str()
        .is_some_and(|aud| aud.ends_with(token_url_suffix))
    {
        return Err(invalid(&format!(
            "The audience must be the token endpoint ending in {token_url_suffix}."
        )));
    }
    Ok(format!("cert:{}", cert.thumbprint))
}
