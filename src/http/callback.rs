//! `GET /oauth/callback`: where Microsoft sends the admin back after sign-in and consent. It hands
//! the redirect to the authorization service ([`crate::control::Control::complete_authorization`]) and shows
//! its outcome as a page: what happened, the remedy, Microsoft's codes and ids. It never redirects
//! anywhere, so it cannot serve as an open redirect.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use crate::control::{Failure, Redirect};
use crate::http::AppState;
use crate::http::page::Notice;

pub use crate::control::authorization::EMPTY_CODE_MESSAGE;

/// Handles the redirect.
pub async fn callback(
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let mut query = query.into_inner();
    let redirect = Redirect {
        state: query.remove("state"),
        code: query.remove("code"),
        error: query.remove("error"),
        error_description: query.remove("error_description"),
        trace_id: query.remove("trace_id"),
        correlation_id: query.remove("correlation_id"),
    };
    match state.control.complete_authorization(&redirect).await {
        Ok(done) => Notice::success(
            "Channel authorized",
            &format!(
                "inboxd now reads {} and polls it at once, then every interval.",
                done.mailbox
            ),
            Some(done.channel),
        )
        .render(StatusCode::OK),
        Err(failure) => failure_page(failure),
    }
}

/// `GET /sign-in/{token}`: a sign-in invitation's link. Valid: on to Microsoft's sign-in (a 303 to
/// the login origin, the only place this handler ever redirects). Otherwise a page that says why
/// and what to do.
pub async fn invitation(state: web::Data<AppState>, token: web::Path<String>) -> HttpResponse {
    use crate::control::invitations::InvitationRefused;
    let ask = "Ask whoever sent you this link for a new one.";
    let (title, detail, remedy, status) = match state.control.open_invitation(&token).await {
        Ok(link) => {
            return HttpResponse::SeeOther()
                .insert_header((actix_web::http::header::LOCATION, link.url))
                .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
                .insert_header(("Referrer-Policy", "no-referrer"))
                .finish();
        }
        Err(InvitationRefused::Unknown) => (
            "This sign-in link is not known",
            "It may be mistyped or cut short.",
            ask,
            StatusCode::NOT_FOUND,
        ),
        Err(InvitationRefused::Expired) => (
            "This sign-in link has expired",
            "Sign-in links work for a limited time.",
            ask,
            StatusCode::GONE,
        ),
        Err(InvitationRefused::Used) => (
            "This sign-in link was used already",
            "A sign-in link works once. If the sign-in did not finish, a new link is needed.",
            ask,
            StatusCode::GONE,
        ),
        Err(InvitationRefused::Revoked) => (
            "This sign-in link was revoked",
            "Whoever sent it withdrew it.",
            ask,
            StatusCode::GONE,
        ),
        Err(InvitationRefused::Unavailable(why)) => {
            tracing::warn!(error = %why, "A sign-in invitation could not start its sign-in.");
            (
                "The sign-in could not start",
                "inboxd could not start the sign-in just now. The link was used; it does not work twice.",
                ask,
                StatusCode::SERVICE_UNAVAILABLE,
            )
        }
    };
    Notice::failure(title, detail, remedy, None).render(status)
}

fn failure_page(failure: Failure) -> HttpResponse {
    let (status, notice) = match failure {
        Failure::Link { code, what } => {
            let remedy = crate::catalogue::Classification::of(code)
                .map(|c| c.remedy())
                .unwrap_or("Start the authorization again from the status page (\"Update auth info\") or with `inboxd channel authorize ID`.");
            (
                StatusCode::BAD_REQUEST,
                Notice::failure(
                    "This authorization link cannot be used",
                    &what,
                    remedy,
                    None,
                )
                .with_code(code),
            )
        }
        Failure::Store { detail, channel } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Notice::failure(
                "inboxd could not use its store",
                &detail,
                "Nothing changed. Fix the disk if it is full, try again in a minute, then \"Update auth info\"; if it persists, see docs/operations.md.",
                channel,
            ),
        ),
        Failure::ChannelGone => (
            StatusCode::NOT_FOUND,
            Notice::failure(
                "The channel no longer exists",
                "It was removed after this authorization started.",
                "Add the channel again.",
                None,
            ),
        ),
        Failure::Microsoft {
            channel,
            code,
            detail,
            remedy,
            trace_id,
            correlation_id,
            at_redemption,
        } => {
            let title = if at_redemption {
                format!("Microsoft refused the authorization ({code})")
            } else {
                format!("Microsoft did not authorize the channel ({code})")
            };
            (
                StatusCode::BAD_REQUEST,
                Notice::failure(&title, &detail, remedy, Some(channel))
                    .with_ids(trace_id, correlation_id),
            )
        }
        Failure::EmptyCode { channel, remedy } => (
            StatusCode::BAD_REQUEST,
            Notice::failure(
                EMPTY_CODE_MESSAGE,
                "Microsoft sent the browser back without an authorization code.",
                remedy,
                Some(channel),
            ),
        ),
        Failure::NoRefreshToken { channel } => (
            StatusCode::BAD_REQUEST,
            Notice::failure(
                "Microsoft sent no refresh token",
                "Without offline_access, inboxd could read the mailbox for one hour only.",
                "In the Azure portal, add the delegated permission offline_access to the app, then \"Update auth info\".",
                Some(channel),
            ),
        ),
    };
    notice.render(status)
}
