//! An app registration's credential: a client secret, or a certificate (an RSA private key with its
//! X.509 certificate) that signs a client assertion for each token request.
//!
//! Microsoft recommends certificates over secrets. A certificate is given as PEM: the certificate and
//! its unencrypted private key (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`), in one text or
//! two. Parsing checks that the key belongs to the certificate, so a mismatch is refused when the
//! operator enters it, not at the next token request. The private key's `Debug` prints a redaction;
//! the PEM leaves the process only sealed in the store.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use x509_cert::der::{Decode as _, Encode as _};
use zeroize::Zeroizing;

use super::secret::ClientSecret;

/// How long a client assertion is valid: Microsoft accepts up to ten minutes; five is plenty for
/// one token request and leaves room for clock skew.
const ASSERTION_LIFETIME_SECS: i64 = 300;

/// Why a certificate or key was refused, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The text holds no certificate.
    #[error(
        "no certificate found: give the PEM text with a -----BEGIN CERTIFICATE----- block (the certificate you uploaded to the app registration) and its private key"
    )]
    NoCertificate,
    /// The text holds no private key.
    #[error(
        "no private key found: give the certificate's unencrypted private key as PEM (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----); an encrypted key can be decrypted with `openssl pkey -in key.pem -out key-plain.pem`"
    )]
    NoPrivateKey,
    /// The certificate does not parse.
    #[error("the certificate is not a valid X.509 certificate: {0}")]
    BadCertificate(String),
    /// The key is not an RSA key (Microsoft's client assertions are RSA-signed).
    #[error(
        "the private key is not an RSA key ({0}): Microsoft Entra ID accepts RSA certificates for client assertions; create an RSA certificate (2048 bits or more)"
    )]
    NotRsa(String),
    /// The key and the certificate do not belong together.
    #[error(
        "the private key does not belong to the certificate: give the key that was created with this certificate"
    )]
    KeyMismatch,
    /// The certificate has already expired.
    #[error(
        "the certificate expired on {0}: create a new certificate, upload it to the app registration (Certificates & secrets → Certificates) and give inboxd the new one"
    )]
    Expired(DateTime<Utc>),
    /// Signing the assertion failed.
    #[error("could not sign the client assertion: {0}")]
    Signing(String),
}

/// An app certificate: its private key (secret) and what inboxd shows of the certificate.
#[derive(Clone)]
pub struct ClientCertificate {
    /// The PEM it was parsed from (certificate and key): what the store seals.
    pem: Zeroizing<String>,
    key: RsaPrivateKey,
    sha1: [u8; 20],
    sha256: [u8; 32],
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    subject: String,
}

impl PartialEq for ClientCertificate {
    fn eq(&self, other: &Self) -> bool {
        self.sha256 == other.sha256 && *self.pem == *other.pem
    }
}
impl Eq for ClientCertificate {}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("thumbprint", &self.thumbprint())
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .field("private_key", &"[redacted]")
            .finish()
    }
}

fn to_utc(time: &x509_cert::time::Time) -> Result<DateTime<Utc>, CredentialError> {
    let secs = i64::try_from(time.to_unix_duration().as_secs())
        .map_err(|_| CredentialError::BadCertificate("a validity date is out of range".into()))?;
    DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| CredentialError::BadCertificate("a validity date is out of range".into()))
}

impl ClientCertificate {
    /// Parses PEM text holding the certificate and its private key (in either order; other blocks
    /// such as a chain's intermediates are ignored: the first certificate is the app's).
    pub fn from_pem(pem: &str) -> Result<Self, CredentialError> {
        let mut cert_der = None;
        let mut key = None;
        let mut reader = std::io::BufReader::new(pem.as_bytes());
        for item in rustls_pemfile::read_all(&mut reader) {
            let item = item.map_err(|err| CredentialError::BadCertificate(err.to_string()))?;
            match item {
                rustls_pemfile::Item::X509Certificate(der) if cert_der.is_none() => {
                    cert_der = Some(der.as_ref().to_vec());
                }
                rustls_pemfile::Item::Pkcs8Key(der) if key.is_none() => {
                    key = Some(
                        RsaPrivateKey::from_pkcs8_der(der.secret_pkcs8_der())
                            .map_err(|err| CredentialError::NotRsa(err.to_string()))?,
                    );
                }
                rustls_pemfile::Item::Pkcs1Key(der) if key.is_none() => {
                    key = Some(
                        RsaPrivateKey::from_pkcs1_der(der.secret_pkcs1_der())
                            .map_err(|err| CredentialError::NotRsa(err.to_string()))?,
                    );
                }
                rustls_pemfile::Item::Sec1Key(_) if key.is_none() => {
                    return Err(CredentialError::NotRsa("an EC key".into()));
                }
                _ => {}
            }
        }
        let cert_der = cert_der.ok_or(CredentialError::NoCertificate)?;
        let key = key.ok_or(CredentialError::NoPrivateKey)?;
        let cert = x509_cert::Certificate::from_der(&cert_der)
            .map_err(|err| CredentialError::BadCertificate(err.to_string()))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|err| CredentialError::BadCertificate(err.to_string()))?;
        let public = RsaPublicKey::from_public_key_der(&spki)
            .map_err(|err| CredentialError::NotRsa(err.to_string()))?;
        if public != key.to_public_key() {
            return Err(CredentialError::KeyMismatch);
        }
        let validity = &cert.tbs_certificate.validity;
        Ok(ClientCertificate {
            pem: Zeroizing::new(pem.to_owned()),
            key,
            sha1: Sha1::digest(&cert_der).into(),
            sha256: Sha256::digest(&cert_der).into(),
            not_before: to_utc(&validity.not_before)?,
            not_after: to_utc(&validity.not_after)?,
            subject: cert.tbs_certificate.subject.to_string(),
        })
    }

    /// The PEM text (certificate and private key). Call this only to seal it in the store.
    pub fn expose_pem(&self) -> &str {
        &self.pem
    }

    /// The SHA-1 thumbprint in upper-case hex, as the Azure portal lists certificates.
    pub fn thumbprint(&self) -> String {
        hex::encode_upper(self.sha1)
    }

    /// The SHA-256 thumbprint, base64url: the `x5t#S256` of the assertion's header.
    pub fn thumbprint_sha256(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.sha256)
    }

    /// The SHA-1 thumbprint, base64url: the `x5t` of the assertion's header.
    pub fn x5t(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.sha1)
    }

    /// The certificate's subject (e.g. `CN=inboxd`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// When the certificate starts being valid.
    pub fn not_before(&self) -> DateTime<Utc> {
        self.not_before
    }

    /// When the certificate expires.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// The public key, for a verifier (the simulator) that registers the certificate.
    pub fn public_key(&self) -> RsaPublicKey {
        self.key.to_public_key()
    }

    /// A client assertion (RFC 7523 JWT, RS256) for one token request to `token_endpoint`: `aud`
    /// the token endpoint, `iss` and `sub` the client id, a fresh `jti`, valid five minutes from
    /// `now`; the header names the certificate by `x5t` and `x5t#S256`.
    pub fn client_assertion(
        &self,
        client_id: &str,
        token_endpoint: &str,
        now: DateTime<Utc>,
    ) -> Result<String, CredentialError> {
        let iat = now.timestamp();
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": self.x5t(),
            "x5t#S256": self.thumbprint_sha256(),
        });
        let claims = serde_json::json!({
            "aud": token_endpoint,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": iat,
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME_SECS,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signer = SigningKey::<Sha256>::new(self.key.clone());
        let signature = signer
            .try_sign(input.as_bytes())
            .map_err(|err| CredentialError::Signing(err.to_string()))?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        ))
    }
}

/// What an app authenticates with at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppCredential {
    /// A client secret's value, with its expiry if the operator gave it.
    Secret {
        /// The value (not the secret's id).
        secret: ClientSecret,
        /// When it expires, if known.
        expires_at: Option<DateTime<Utc>>,
    },
    /// A certificate: each token request carries an assertion it signs.
    Certificate(Box<ClientCertificate>),
}

/// A credential's kind, for views and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// A client secret.
    Secret,
    /// A certificate.
    Certificate,
}

impl CredentialKind {
    /// The snake_case name the API and the metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Secret => "secret",
            CredentialKind::Certificate => "certificate",
        }
    }
}

impl AppCredential {
    /// Its kind.
    pub fn kind(&self) -> CredentialKind {
        match self {
            AppCredential::Secret { .. } => CredentialKind::Secret,
            AppCredential::Certificate(_) => CredentialKind::Certificate,
        }
    }

    /// When it expires: the secret's date if given, the certificate's `notAfter`.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self {
            AppCredential::Secret { expires_at, .. } => *expires_at,
            AppCredential::Certificate(cert) => Some(cert.not_after()),
        }
    }

    /// Whether it is the same credential as `other` (the same secret value or certificate), whatever
    /// expiry was noted with it.
    pub fn same_as(&self, other: &AppCredential) -> bool {
        match (self, other) {
            (AppCredential::Secret { secret: a, .. }, AppCredential::Secret { secret: b, .. }) => {
                a == b
            }
            (AppCredential::Certificate(a), AppCredential::Certificate(b)) => a.sha256 == b.sha256,
            _ => false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// A self-signed RSA certificate valid `days` more, with its key (the test kit's helper is
    /// not used here: it links a second copy of this crate into the unit tests).
    fn certificate(days: i64) -> String {
        use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};
        let private = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let key_pem = private.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let key =
            rcgen::KeyPair::from_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["inboxd.test".to_owned()]).unwrap();
        let until = (Utc::now() + chrono::Duration::days(days)).date_naive();
        use chrono::Datelike as _;
        params.not_after =
            rcgen::date_time_ymd(until.year(), until.month() as u8, until.day() as u8);
        let cert = params.self_signed(&key).unwrap();
        format!("{}{key_pem}", cert.pem())
    }

    #[test]
    fn a_certificate_with_its_key_parses_and_signs_a_verifiable_assertion() {
        let pem = certificate(30);
        let cert = ClientCertificate::from_pem(&pem).unwrap();
        assert_eq!(cert.thumbprint().len(), 40);
        assert!(cert.not_after() > Utc::now());
        let jwt = cert
            .client_assertion("c1", "https://login.test/t/oauth2/v2.0/token", Utc::now())
            .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["x5t"], cert.x5t());
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["aud"], "https://login.test/t/oauth2/v2.0/token");
        assert_eq!(claims["iss"], "c1");
        use rsa::signature::Verifier as _;
        let verifier = rsa::pkcs1v15::VerifyingKey::<Sha256>::new(cert.public_key());
        let sig = rsa::pkcs1v15::Signature::try_from(
            URL_SAFE_NO_PAD.decode(parts[2]).unwrap().as_slice(),
        )
        .unwrap();
        verifier
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
        assert!(!format!("{cert:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let a = certificate(30);
        let b = certificate(30);
        let cert_a = &a[..a.find("-----BEGIN PRIVATE KEY").unwrap()];
        assert!(ClientCertificate::from_pem(&a).is_ok());
        let key_b = &b[b.find("-----BEGIN PRIVATE KEY").unwrap()..];
        let err = ClientCertificate::from_pem(&format!("{cert_a}{key_b}")).unwrap_err();
        assert_eq!(err, CredentialError::KeyMismatch);
        let only_cert = ClientCertificate::from_pem(cert_a).unwrap_err();
        assert_eq!(only_cert, CredentialError::NoPrivateKey);
        assert_eq!(
            ClientCertificate::from_pem("hello").unwrap_err(),
            CredentialError::NoCertificate
        );
    }
}
