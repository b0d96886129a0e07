//! The simulator's token-signing key and `GET /{tenant}/discovery/v2.0/keys`, the JWKS that the
//! OpenID configuration's `jwks_uri` names: id_tokens are RS256 JWTs signed with this key, so a
//! client can verify them as it would Entra's.
//!
//! One RSA-2048 key is generated the first time a simulator of the process needs it and is shared by
//! every simulator of the process (generating one per instance would cost each test its start-up).

use std::sync::{Arc, OnceLock};

use actix_web::http::header;
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use super::errors::error_response;
use super::resolve;
use crate::sim::counters::Endpoint;
use crate::sim::state::SimState;
use crate::sim::util;

/// The signing key with its public half as a JWK.
pub struct Key {
    signer: SigningKey<Sha256>,
    /// Key id: the `kid` of JWT headers and of the JWK.
    pub kid: String,
    /// Modulus and exponent, base64url (unpadded, big-endian).
    pub n: String,
    pub e: String,
}

static KEY: OnceLock<Option<Key>> = OnceLock::new();

/// The process's signing key; `None` only if key generation failed.
pub fn key() -> Option<&'static Key> {
    KEY.get_or_init(|| {
        let private = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).ok()?;
        let n = private.n().to_bytes_be();
        let e = private.e().to_bytes_be();
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(&n)[..20]);
        Some(Key {
            signer: SigningKey::<Sha256>::new(private),
            kid,
            n: URL_SAFE_NO_PAD.encode(&n),
            e: URL_SAFE_NO_PAD.encode(&e),
        })
    })
    .as_ref()
}

/// A compact JWS (RS256) of `claims`; `None` if the key is unavailable.
pub fn sign_jwt(claims: &serde_json::Value) -> Option<String> {
    let key = key()?;
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": key.kid});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key.signer.try_sign(input.as_bytes()).ok()?;
    Some(format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(sig.to_bytes())
    ))
}

/// `GET /{tenant}/discovery/v2.0/keys`: `{"keys":[{kty, use, kid, n, e, issuer}]}`.
pub async fn keys(
    state: Data<Arc<SimState>>,
    req: HttpRequest,
    tenant: Path<String>,
) -> HttpResponse {
    state.counters.hit(Endpoint::Keys, None);
    let (tid, alias) = match resolve(&state, &tenant) {
        Ok(t) => t,
        Err(mut e) => {
            e.error = "invalid_tenant".into();
            return error_response(&state, &req, &e);
        }
    };
    let issuer_tenant = match (tid, alias) {
        (Some(t), false) => t,
        _ => "{tenantid}".to_owned(),
    };
    let keys: Vec<serde_json::Value> = key()
        .into_iter()
        .map(|k| {
            serde_json::json!({
                "kty": "RSA",
                "use": "sig",
                "kid": k.kid,
                "n": k.n,
                "e": k.e,
                "cloud_instance_name": "microsoftonline.com",
                "issuer": format!("{}/{issuer_tenant}/v2.0", util::origin(&req)),
            })
        })
        .collect();
    HttpResponse::Ok()
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .insert_header((header::CACHE_CONTROL, "max-age=86400, private"))
        .json(serde_json::json!({"keys": keys}))
}
