//! The login view: the admin token form, with what went wrong last time.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use maud::html;

use crate::http::page::frame::page;

/// The login form with `status`, and `problem` shown above it.
pub fn login_page(secure: bool, status: StatusCode, problem: Option<&str>) -> HttpResponse {
    let body = html! {
        main.narrow {
            h1 { "inboxd" }
            @if let Some(problem) = problem {
                p.flash.problem id="login-problem" role="alert" { (problem) }
            }
            form method="post" action="/login" id="login" {
                label for="token" { "Admin token" }
                input type="password" id="token" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Log in" }
            }
            p.muted {
                "The token is the value of INBOXD_ADMIN_TOKEN (or the file named by security.admin_token_file)."
                @if !secure {
                    " This server's public URL is not https: use it only on a trusted network or behind a TLS proxy."
                }
            }
        }
    };
    page(status, "Log in", body)
}
