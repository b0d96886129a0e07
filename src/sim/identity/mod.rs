//! The identity platform v2.0 (Entra ID) as the simulator plays it, by concern: [`authorize`] (sign-in,
//! consent and the redirect), [`token`] (the authorization-code and refresh-token grants, refresh
//! token rotation and reuse), [`discovery`] (OpenID metadata), [`keys`] (the id_token signing key
//! and its JWKS), and [`errors`] (the AADSTS table and
//! Microsoft's error shapes), and [`introspect`] (RFC 7662 introspection, the simulator's own). This module resolves the `{tenant}` path segment they all take.

pub mod assertion;
mod authorize;
mod discovery;
mod errors;
mod introspect;
mod keys;
mod token;

use rand::Rng;

pub use self::authorize::authorize;
pub use self::discovery::openid_configuration;
pub use self::introspect::introspect;
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

/// A request naming scopes of more than one resource (Graph and Exchange Online): Microsoft issues a
/// token for one resource at a time and refuses the request as an invalid scope.
fn more_than_one_resource(scopes: &[String], requested: &str) -> Option<StsError> {
    let first = scopes.first().map(|s| super::state::audience_of(s))?;
    if scopes.iter().all(|s| super::state::audience_of(s) == first) {
        return None;
    }
    let mut e = StsError::new(70011, &[("scope", requested)]);
    e.message = format!(
        "The provided value for the input parameter 'scope' is not valid because it contains more than one resource. Scope {requested} is not valid."
    );
    Some(e)
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
