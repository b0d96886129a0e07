//! Encryption of secret fields at rest: XChaCha20-Poly1305 under the master key.
//!
//! Each secret is sealed on its own with a fresh random 24-byte nonce and with associated data that
//! names the record and the field (`"{record}|{field}"`), so a ciphertext copied to another record
//! or field fails to open. The sealed form is `base64(nonce || ciphertext+tag)`, which is what the
//! persisted records hold.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use zeroize::Zeroizing;

use crate::domain::secret::MasterKey;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Why a sealed value could not be opened. The caller turns it into a `StoreError` naming the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// Not base64 or too short to hold a nonce and a tag.
    Malformed,
    /// The tag does not verify: wrong key, tampered bytes, or a ciphertext from another record.
    Authentication,
    /// The plaintext is not UTF-8.
    NotUtf8,
}

impl OpenError {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            OpenError::Malformed => "an encrypted field is malformed",
            OpenError::Authentication => {
                "an encrypted field does not decrypt: it was altered, copied from another record, or sealed under another master key"
            }
            OpenError::NotUtf8 => "an encrypted field holds bytes that are not text",
        }
    }
}

/// The cipher refused to encrypt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealError;

/// The cipher for one store, built once from the master key.
pub(crate) struct Crypto {
    cipher: XChaCha20Poly1305,
}

impl Crypto {
    pub(crate) fn new(key: &MasterKey) -> Self {
        Crypto {
            cipher: XChaCha20Poly1305::new(Key::from_slice(key.expose())),
        }
    }

    fn associated_data(record: &str, field: &str) -> Vec<u8> {
        let mut aad = Vec::with_capacity(record.len() + field.len() + 8);
        aad.extend_from_slice(b"inboxd1|");
        aad.extend_from_slice(record.as_bytes());
        aad.push(b'|');
        aad.extend_from_slice(field.as_bytes());
        aad
    }

    /// Seals `plaintext` for `field` of `record`.
    /// Fails only if the cipher refuses the input (a message over 256 GiB, which a secret never is).
    pub(crate) fn seal(
        &self,
        record: &str,
        field: &str,
        plaintext: &str,
    ) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = Self::associated_data(record, field);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SealError)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(base64::engine::general_purpose::STANDARD_NO_PAD.encode(out))
    }

    /// Opens a value sealed for `field` of `record`.
    pub(crate) fn open(
        &self,
        record: &str,
        field: &str,
        sealed: &str,
    ) -> Result<Zeroizing<String>, OpenError> {
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(sealed)
            .map_err(|_| OpenError::Malformed)?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let aad = Self::associated_data(record, field);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Authentication)?;
        String::from_utf8(plain).map(Zeroizing::new).map_err(|err| {
            let mut bytes = err.into_bytes();
            zeroize::Zeroize::zeroize(&mut bytes);
            OpenError::NotUtf8
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_round_trips_with_fresh_nonces() {
        let crypto = Crypto::new(&MasterKey::generate());
        let a = crypto
            .seal("channel/1", "client_secret", "hunter2")
            .unwrap();
        let b = crypto
            .seal("channel/1", "client_secret", "hunter2")
            .unwrap();
        assert_ne!(a, b, "each seal must use a fresh nonce");
        assert!(!a.contains("hunter2"));
        assert_eq!(
            crypto
                .open("channel/1", "client_secret", &a)
                .unwrap()
                .as_str(),
            "hunter2"
        );
    }

    #[test]
    fn another_record_field_or_key_fails() {
        let crypto = Crypto::new(&MasterKey::generate());
        let sealed = crypto
            .seal("channel/1", "client_secret", "hunter2")
            .unwrap();
        assert_eq!(
            crypto.open("channel/2", "client_secret", &sealed).err(),
            Some(OpenError::Authentication)
        );
        assert_eq!(
            crypto.open("channel/1", "refresh_token", &sealed).err(),
            Some(OpenError::Authentication)
        );
        let other = Crypto::new(&MasterKey::generate());
        assert_eq!(
            other.open("channel/1", "client_secret", &sealed).err(),
            Some(OpenError::Authentication)
        );
    }

    #[test]
    fn flipped_or_truncated_bytes_fail() {
        let crypto = Crypto::new(&MasterKey::generate());
        let sealed = crypto.seal("r", "f", "value").unwrap();
        let mut raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(&sealed)
            .unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let flipped = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&raw);
        assert_eq!(
            crypto.open("r", "f", &flipped).err(),
            Some(OpenError::Authentication)
        );
        assert_eq!(
            crypto.open("r", "f", "AAAA").err(),
            Some(OpenError::Malformed)
        );
        assert_eq!(
            crypto.open("r", "f", "!!").err(),
            Some(OpenError::Malformed)
        );
    }
}
