//! The identity platform v2.0 (Entra ID) as the simulator plays it, by concern: [`authorize`] (sign-in,
//! consent and the redirect), [`token`] (the authorization-code and refresh-token grants, refresh
//! token rotation and reuse), [`discovery`] (OpenID metadata), [`keys`] (the id_token signing key
//! and its JWKS), and [`errors`] (the AADSTS table and
//! Microsoft's error shapes). This module resolves the `{tenant}` path segment they all take.

pub mod assertion;
mod authorize;
mod discovery;
mod errors;
mod keys;
mod token;

use rand::Rng;

pub use self::authorize::authorize;
pub use self::discovery::openid_configuration;
pub use self::keys::keys;
pub use self::token::token;

use self::errors::StsError;
use super::state::SimState;

/// Tenant aliases accepted as Microsoft does.
const ALIASES: &[&str] = &["common", "organizations", "consumers"];

/// Resolves a `{tenant}` path segment: (the tenant's id, or None for an alias; whether it is an alias).
/// An unknown tenant is AADSTS90002.
fn resolve(state: &SimState, segment: &str) -> Result<(Option<String>, bool), StsError> {
    let lower = segment.to_ascii_lowercase();
    if ALIASES.contains(&lower.as_str()) {
        return Ok((None, true));
    }
    match state.resolve_tenant(&lower) {
        Some(t) => Ok((Some(t), false)),
        None => Err(StsError::new(90002, &[("tenant", segment)])),
    }
}

/// A random URL-safe token of `len` characters.
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| {
            ALPHABET
                .get(rng.gen_range(0..ALPHABET.len()))
                .copied()
                .unwrap_or(b'A') as char
        })
        .collect()
}
