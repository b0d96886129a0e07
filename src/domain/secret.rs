//! Secrets as types: client secrets, tokens, PKCE verifiers, the admin token and the master key.
//!
//! Their `Debug` and `Display` print a redaction, never the value; the only way to the value is the
//! explicit [`expose`](ClientSecret::expose) call, which is easy to grep for. Values are wiped from
//! memory on drop. None of these types is `Serialize`: the store encrypts them field by field.

use std::fmt;

use base64::Engine as _;
use rand::RngCore as _;
use zeroize::Zeroize as _;

use crate::domain::DomainError;

macro_rules! secret_string {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value. An empty or whitespace-only value is refused.
            pub fn new(value: impl Into<String>) -> Result<Self, DomainError> {
                let value = value.into();
                if value.trim().is_empty() {
                    return Err(DomainError::InvalidSecret($what, "it is empty"));
                }
                Ok($name(value))
            }

            /// The value itself. Call this only where the value leaves the process on purpose
            /// (a request to Microsoft, the encryption of the store).
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "([redacted])"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[redacted]")
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                self.0.zeroize();
            }
        }
    };
}

secret_string!(
    /// The *value* of an app registration's client secret (not its id).
    ClientSecret,
    "client secret"
);
secret_string!(
    /// A Graph access token.
    AccessToken,
    "access token"
);
secret_string!(
    /// A refresh token. It rotates on every use; the newest one must be persisted before use.
    RefreshToken,
    "refresh token"
);
secret_string!(
    /// The bearer token that guards the admin API and the status page.
    AdminToken,
    "admin token"
);
secret_string!(
    /// The secret that signs webhook bodies (HMAC-SHA256).
    WebhookSecret,
    "webhook secret"
);

impl AdminToken {
    /// A fresh random admin token (32 bytes from the operating system's generator, base64url):
    /// for a daemon that makes its own, such as `inboxd demo`, instead of a fixed string.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        AdminToken(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }
}

/// An access token as a channel keeps it between cycles: each base64url segment of the token
/// (a JWT's header, claims and signature, or an opaque token's parts between dots) held as the
/// bytes it encodes, about three quarters of the text. A channel holds its access token for up to
/// an hour and uses it once every two minutes; Microsoft's are 1.5–2.5 KB, so at a million
/// channels the text is gigabytes. A token that does not read back to exactly the same text (a
/// segment that is not canonical base64url, or a segment over 64 KiB) is kept as text.
///
/// Like the other secrets: `Debug` is redacted, the bytes are wiped on drop, and the text comes
/// back only through [`expose`](Self::expose).
#[derive(PartialEq, Eq)]
pub struct CompactAccessToken(Box<[u8]>);

/// The first byte of a [`CompactAccessToken`]: the text follows as is.
const COMPACT_TEXT: u8 = 0;
/// The first byte of a [`CompactAccessToken`]: a segment count, each segment's decoded length
/// (two bytes, little-endian), then the segments' bytes.
const COMPACT_SEGMENTS: u8 = 1;

impl CompactAccessToken {
    /// Packs `token`.
    pub fn of(token: &AccessToken) -> Self {
        CompactAccessToken(Self::packed(token.expose()).unwrap_or_else(|| {
            let mut text = Vec::with_capacity(1 + token.expose().len());
            text.push(COMPACT_TEXT);
            text.extend_from_slice(token.expose().as_bytes());
            text.into_boxed_slice()
        }))
    }

    fn packed(text: &str) -> Option<Box<[u8]>> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let segments: Vec<&str> = text.split('.').collect();
        let count = u8::try_from(segments.len()).ok()?;
        let mut decoded = zeroize::Zeroizing::new(Vec::with_capacity(text.len()));
        let mut lengths = Vec::with_capacity(segments.len() * 2);
        for segment in &segments {
            let start = decoded.len();
            URL_SAFE_NO_PAD
                .decode_vec(segment.as_bytes(), &mut decoded)
                .ok()?;
            let length = u16::try_from(decoded.len() - start).ok()?;
            lengths.extend_from_slice(&length.to_le_bytes());
            // Only a segment that reads back to the same text is packed: base64 ignores the
            // unused bits of a segment's last character, and the token must come back exactly.
            let back = zeroize::Zeroizing::new(URL_SAFE_NO_PAD.encode(&decoded[start..]));
            if back.as_str() != *segment {
                return None;
            }
        }
        let mut packed = Vec::with_capacity(2 + lengths.len() + decoded.len());
        packed.push(COMPACT_SEGMENTS);
        packed.push(count);
        packed.extend_from_slice(&lengths);
        packed.extend_from_slice(&decoded);
        Some(packed.into_boxed_slice())
    }

    /// The token's text. Call this only where it leaves the process (a request to Microsoft).
    pub fn expose(&self) -> zeroize::Zeroizing<String> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut text = zeroize::Zeroizing::new(String::new());
        match self.0.split_first() {
            Some((&COMPACT_SEGMENTS, rest)) => {
                let (count, rest) = rest.split_first().map_or((0, rest), |(n, r)| (*n, r));
                let count = usize::from(count);
                let (lengths, mut bytes) = rest.split_at((count * 2).min(rest.len()));
                text.reserve(bytes.len() * 4 / 3 + count + 3);
                for (i, length) in lengths.chunks_exact(2).enumerate() {
                    let length = usize::from(u16::from_le_bytes([length[0], length[1]]));
                    let (segment, after) = bytes.split_at(length.min(bytes.len()));
                    if i > 0 {
                        text.push('.');
                    }
                    URL_SAFE_NO_PAD.encode_string(segment, &mut text);
                    bytes = after;
                }
            }
            Some((_, rest)) => text.push_str(&String::from_utf8_lossy(rest)),
            None => {}
        }
        text
    }

    /// Whether this is `token`.
    pub fn is(&self, token: &AccessToken) -> bool {
        self.expose().as_str() == token.expose()
    }
}

impl fmt::Debug for CompactAccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CompactAccessToken([redacted])")
    }
}

impl Drop for CompactAccessToken {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A PKCE code verifier (RFC 7636). Deliberately not `Clone`: a verifier is used once.
#[derive(PartialEq, Eq)]
pub struct PkceVerifier(String);

impl PkceVerifier {
    /// Wraps a verifier; RFC 7636 asks for 43 to 128 characters of `[A-Za-z0-9-._~]`.
    pub fn new(value: impl Into<String>) -> Result<Self, DomainError> {
        let value = value.into();
        let ok_len = (43..=128).contains(&value.len());
        let ok_chars = value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
        if !ok_len || !ok_chars {
            return Err(DomainError::InvalidSecret(
                "PKCE verifier",
                "it must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
            ));
        }
        Ok(PkceVerifier(value))
    }

    /// The value, for the token request and the encrypted store only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PkceVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PkceVerifier([redacted])")
    }
}

impl Drop for PkceVerifier {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The 32-byte key that encrypts every secret in the store (XChaCha20-Poly1305).
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        MasterKey(bytes)
    }

    /// Parses a key as `inboxd keygen` prints it (base64 of 32 bytes), or as 64 hex digits.
    pub fn parse(encoded: &str) -> Result<Self, DomainError> {
        let trimmed = encoded.trim();
        let bytes = if trimmed.len() == 64 && trimmed.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(trimmed).ok()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(trimmed)
                .ok()
        };
        let bytes: [u8; 32] = bytes.and_then(|b| b.try_into().ok()).ok_or(DomainError::InvalidSecret(
            "master key",
            "it must be 32 bytes written as base64 (44 characters) or as 64 hex digits; make one with `inboxd keygen`",
        ))?;
        Ok(MasterKey(bytes))
    }

    /// The key as `inboxd keygen` prints it.
    pub fn encode(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// The raw key bytes, for the cipher only.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    #[test]
    fn a_compact_access_token_reads_back_exactly_and_is_smaller() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256"}"#);
        let claims = URL_SAFE_NO_PAD
            .encode(br#"{"aud":"https://graph.microsoft.com","scp":"Mail.ReadWrite.Shared"}"#);
        let signature = URL_SAFE_NO_PAD.encode([7u8; 256]);
        let jwt = format!("{header}.{claims}.{signature}");
        let texts = [
            jwt.clone(),
            // An opaque token with an empty segment and a one-character one (not base64).
            "EwBgA8l6BAAU..x".to_owned(),
            // Base64url whose last character carries unused bits: packing would change it.
            "AB.AF".to_owned(),
            "plain token with spaces".to_owned(),
            format!("{}.{}", "A".repeat(70_000), "B"),
        ];
        for text in texts {
            let token = AccessToken::new(text.clone()).unwrap();
            let compact = CompactAccessToken::of(&token);
            assert_eq!(
                compact.expose().as_str(),
                text,
                "the token came back changed"
            );
            assert!(compact.is(&token));
            assert!(!compact.is(&AccessToken::new(format!("{text}x")).unwrap()));
            assert_eq!(format!("{compact:?}"), "CompactAccessToken([redacted])");
        }
        let compact = CompactAccessToken::of(&AccessToken::new(jwt.clone()).unwrap());
        assert!(
            compact.0.len() * 100 < jwt.len() * 78,
            "a JWT packed to {} bytes of {}",
            compact.0.len(),
            jwt.len()
        );
    }

    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = ClientSecret::new("s3cr3t-value").ok();
        let shown = format!(
            "{secret:?} {}",
            secret.as_ref().map(ToString::to_string).unwrap_or_default()
        );
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("ClientSecret([redacted])"), "{shown}");
        let verifier = PkceVerifier::new("a".repeat(43)).ok();
        assert_eq!(format!("{verifier:?}"), "Some(PkceVerifier([redacted]))");
        let key = MasterKey::generate();
        assert!(!format!("{key:?}").contains(&key.encode()));
    }

    #[test]
    fn generated_admin_tokens_are_long_and_differ() {
        let (a, b) = (AdminToken::generate(), AdminToken::generate());
        assert_eq!(a.expose().len(), 43);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(format!("{a:?}"), "AdminToken([redacted])");
    }

    #[test]
    fn empty_secrets_are_refused() {
        assert!(ClientSecret::new("  ").is_err());
        assert!(PkceVerifier::new("short").is_err());
    }

    #[test]
    fn master_key_round_trips_through_base64_and_hex() {
        let key = MasterKey::generate();
        assert_eq!(MasterKey::parse(&key.encode()).ok(), Some(key.clone()));
        assert_eq!(MasterKey::parse(&hex::encode(key.expose())).ok(), Some(key));
        let err = MasterKey::parse("too-short")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("inboxd keygen"), "{err}");
    }
}
