//! SASL XOAUTH2 as Exchange Online checks it: `base64("user=" mailbox ^A "auth=Bearer " token ^A ^A)`,
//! a token the simulator issued, unexpired, for Exchange Online (audience `https://outlook.office.com`)
//! with `IMAP.AccessAsUser.All`, and a mailbox that is the token's user's own or one it has Full
//! Access to (the grants Graph honours too), with IMAP enabled. [`check_token`] is the token part
//! alone, which the introspection endpoint shares.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::sim::state::{IMAP_SCOPE, OUTLOOK_AUDIENCE, SimState, TokenClaims};

/// Why an XOAUTH2 attempt failed. The client only ever sees `NO AUTHENTICATE failed.`; the reason
/// goes to the simulator's log (never the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// Not base64, or not `user=…^Aauth=Bearer …^A^A`.
    Malformed,
    /// Not a token this simulator issued (or not an access token).
    UnknownToken,
    Expired,
    /// A token for another resource (Graph).
    WrongAudience,
    /// No `IMAP.AccessAsUser.All` in the token.
    MissingScope,
    NoSuchMailbox,
    /// The token's user has no Full Access to the mailbox.
    NoAccess,
    /// IMAP is switched off for the mailbox.
    ImapDisabled,
}

impl Denied {
    /// The reason's name in logs.
    pub fn name(self) -> &'static str {
        match self {
            Denied::Malformed => "malformed",
            Denied::UnknownToken => "unknown_token",
            Denied::Expired => "expired",
            Denied::WrongAudience => "wrong_audience",
            Denied::MissingScope => "missing_scope",
            Denied::NoSuchMailbox => "no_such_mailbox",
            Denied::NoAccess => "no_access",
            Denied::ImapDisabled => "imap_disabled",
        }
    }
}

/// The two fields of an XOAUTH2 initial response.
pub struct XOAuth2 {
    pub user: String,
    pub token: String,
}

/// Decodes an XOAUTH2 initial response (base64).
pub fn decode(b64: &str) -> Result<XOAuth2, Denied> {
    let raw = STANDARD.decode(b64.trim()).map_err(|_| Denied::Malformed)?;
    let text = String::from_utf8(raw).map_err(|_| Denied::Malformed)?;
    let mut user = None;
    let mut token = None;
    for field in text.split('\x01') {
        if let Some(u) = field.strip_prefix("user=") {
            user = Some(u.trim().to_ascii_lowercase());
        } else if let Some(a) = field.strip_prefix("auth=") {
            let (scheme, t) = a.split_once(' ').ok_or(Denied::Malformed)?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(Denied::Malformed);
            }
            token = Some(t.trim().to_owned());
        }
    }
    match (user, token) {
        (Some(user), Some(token)) if !user.is_empty() && !token.is_empty() => {
            Ok(XOAuth2 { user, token })
        }
        _ => Err(Denied::Malformed),
    }
}

/// Whether `token` is an access token this simulator issued and has not expired; its claims.
pub fn active_token(state: &SimState, token: &str) -> Result<TokenClaims, Denied> {
    let claims = state
        .verify("at", token)
        .map_err(|_| Denied::UnknownToken)?;
    if claims.exp <= state.now_ms() {
        return Err(Denied::Expired);
    }
    Ok(claims)
}

/// The checks on the token alone: active, for Exchange Online, with the IMAP scope.
pub fn check_token(state: &SimState, token: &str) -> Result<TokenClaims, Denied> {
    let claims = active_token(state, token)?;
    if claims.audience() != OUTLOOK_AUDIENCE {
        return Err(Denied::WrongAudience);
    }
    if !claims.scp.split_whitespace().any(|s| s == IMAP_SCOPE) {
        return Err(Denied::MissingScope);
    }
    Ok(claims)
}

/// Every check of an AUTHENTICATE: the token, then the mailbox named in `user=`.
pub fn check(state: &SimState, x: &XOAuth2) -> Result<TokenClaims, Denied> {
    let claims = check_token(state, &x.token)?;
    let Some(mailbox) = state.mailbox(&x.user) else {
        return Err(Denied::NoSuchMailbox);
    };
    if !state.may_access(&claims.upn, &mailbox.address) {
        return Err(Denied::NoAccess);
    }
    if mailbox.data.lock().imap_disabled {
        return Err(Denied::ImapDisabled);
    }
    Ok(claims)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn decodes_microsofts_example() {
        // The example of Microsoft's IMAP OAuth page.
        let x = decode("dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0NjbFJDM0VvQUEBAQ==").unwrap();
        assert_eq!(x.user, "test@contoso.onmicrosoft.com");
        assert_eq!(x.token, "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA");
        assert!(decode("not base64!").is_err());
        assert!(decode(&STANDARD.encode("user=a@b\x01\x01")).is_err());
        assert!(decode(&STANDARD.encode("user=a@b\x01auth=Basic x\x01\x01")).is_err());
    }
}
