//! The admin API's OpenAPI 3.1 document, generated from the code: each handler's
//! `#[utoipa::path]` ([`crate::http::admin`]), the request and response types' `ToSchema`
//! ([`crate::http::dto`]), and here what every token-protected operation shares: the bearer
//! scheme and the 401, 429 and 503 answers.
//!
//! `GET /api/openapi.json` serves it **without** the admin token: it describes the API's shape
//! only (no channel, no secret, nothing the public source does not say), so tools can fetch it
//! before they hold a token (a fuzzer, a client generator, an API browser), and fetching it never
//! counts as a failed attempt against the address.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, Object, Ref, RefOr, Response, ResponseBuilder, Type,
};
use utoipa::{Modify, OpenApi};

use crate::http::dto::{ErrorBody, ErrorDetail, PollModeName, StatusName, TransportName};
use crate::http::{admin, apps};

/// The name of the bearer security scheme in the document (`security(...)` of [`ApiDoc`] spells it too).
pub const SECURITY_SCHEME: &str = "admin_token";

/// The operation id of `GET /api/openapi.json`, the one operation without the token.
const DOCUMENT_OPERATION: &str = "openapi_document";

/// The document's root: every operation of `/api` and the schemas they use.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "inboxd admin API",
        description = "Manage inboxd's channels (one Outlook / Microsoft 365 mailbox each): add, \
            authorize, change, poll, backfill, enable, disable, remove, and look at their \
            quarantine. Every operation but this document's needs `Authorization: Bearer <admin \
            token>` (the token of `INBOXD_ADMIN_TOKEN` or `server.admin_token_file`); an address \
            that sends a wrong token too often is refused with 429 for a while. Every error is \
            `{\"error\": {\"code\", \"message\"}}`: a stable code, and a message that says what is \
            wrong and how to fix it. Invalid input is 400 (inboxd does not use 422).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        serve,
        admin::list,
        admin::add,
        admin::show,
        admin::update,
        admin::remove,
        admin::authorize,
        admin::poll,
        admin::backfill,
        admin::enable,
        admin::disable,
        admin::quarantine,
        admin::replay,
        admin::events,
        admin::invite,
        admin::revoke_invitation,
        apps::list_apps,
        apps::add_app,
        apps::show_app,
        apps::rotate_app,
        apps::remove_app,
    ),
    components(schemas(ErrorBody, ErrorDetail, StatusName, PollModeName, TransportName)),
    modifiers(&Protected),
    security(("admin_token" = [])),
    tags(
        (name = "channels", description = "Channels: one mailbox folder each, polled through Microsoft Graph."),
        (name = "apps", description = "App registrations (tenant, client id) and their one credential, a client secret or a certificate, shared by every channel of the app."),
        (name = "reference", description = "This document."),
    ),
)]
pub struct ApiDoc;

/// The document as a value.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as JSON, built once.
fn document_json() -> Result<&'static str, &'static str> {
    static JSON: OnceLock<Result<String, String>> = OnceLock::new();
    JSON.get_or_init(|| document().to_json().map_err(|e| e.to_string()))
        .as_deref()
        .map_err(String::as_str)
}

/// This document: every operation of the admin API with its parameters, bodies and answers.
///
/// Needs no token: the document holds no data of the daemon's, only the API's shape.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "reference",
    operation_id = "openapi_document",
    security(()),
    responses(
        (status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json", body = serde_json::Value),
    )
)]
pub(crate) async fn serve() -> HttpResponse {
    match document_json() {
        Ok(json) => HttpResponse::Ok()
            .content_type("application/json")
            .body(json),
        Err(cause) => {
            tracing::error!(cause, "The OpenAPI document could not be written as JSON.");
            HttpResponse::InternalServerError().json(ErrorBody::new(
                "internal",
                "internal error: the OpenAPI document could not be written; the cause is in inboxd's log",
            ))
        }
    }
}

/// Adds the bearer scheme and, to every operation that needs the token, the answers of the
/// token check and of a daemon that cannot act right now.
struct Protected;

impl Modify for Protected {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token: INBOXD_ADMIN_TOKEN, or the file of `server.admin_token_file`.",
                    ))
                    .build(),
            ),
        );
        let shared = [
            (
                "401",
                "Unauthorized",
                error_response(
                    "No or a wrong admin token: send `Authorization: Bearer <token>`.",
                    "unauthorized",
                    "missing or wrong admin token: send `Authorization: Bearer <token>` with the token from INBOXD_ADMIN_TOKEN",
                    Some(("WWW-Authenticate", "`Bearer`.", Type::String)),
                ),
            ),
            (
                "429",
                "TooManyAttempts",
                error_response(
                    "Too many wrong tokens from this address: it is refused until `Retry-After` has passed, whatever it sends.",
                    "too_many_attempts",
                    "too many failed attempts with a wrong admin token from this address; try again in 42 s",
                    Some((
                        "Retry-After",
                        "Seconds until the address may try again.",
                        Type::Integer,
                    )),
                ),
            ),
            (
                "503",
                "Unavailable",
                error_response(
                    "inboxd cannot do it right now (the store refused, or it is shutting down); nothing changed, try again later.",
                    "unavailable",
                    "inboxd is shutting down",
                    None,
                ),
            ),
        ];
        for (_, name, response) in &shared {
            components
                .responses
                .insert((*name).to_owned(), RefOr::T(response.clone()));
        }
        for item in doc.paths.paths.values_mut() {
            for operation in operations(item) {
                if operation.operation_id.as_deref() == Some(DOCUMENT_OPERATION) {
                    continue;
                }
                for (status, name, _) in &shared {
                    operation
                        .responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
                }
            }
        }
    }
}

/// Every operation of a path item.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// An error answer: the error body with an example, and maybe a header.
fn error_response(
    description: &str,
    code: &str,
    message: &str,
    header: Option<(&str, &str, Type)>,
) -> Response {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .example(Some(
            serde_json::json!({"error": {"code": code, "message": message}}),
        ))
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content);
    if let Some((name, about, kind)) = header {
        response = response.header(
            name,
            HeaderBuilder::new()
                .schema(Some(Object::with_type(kind)))
                .description(Some(about))
                .build(),
        );
    }
    response.build()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::domain::ChannelStatus;

    /// Every (method, path) the document lists.
    fn documented() -> BTreeSet<(String, String)> {
        let value = serde_json::to_value(document()).unwrap_or_default();
        let mut found = BTreeSet::new();
        if let Some(paths) = value["paths"].as_object() {
            for (path, item) in paths {
                for method in item.as_object().into_iter().flat_map(|m| m.keys()) {
                    found.insert((method.clone(), path.clone()));
                }
            }
        }
        found
    }

    #[test]
    fn the_document_lists_every_route_of_the_router_and_no_other() {
        let routed: BTreeSet<(String, String)> = admin::ROUTES
            .iter()
            .map(|(method, path)| ((*method).to_owned(), format!("/api{path}")))
            .collect();
        assert!(
            routed.len() >= 13,
            "the route table looks empty: {routed:?}"
        );
        let documented = documented();
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty(),
            "routes without an OpenAPI operation: {missing:?}; add `#[utoipa::path]` to the handler and list it in `paths(...)` of ApiDoc (src/http/openapi.rs)"
        );
        assert!(
            extra.is_empty(),
            "operations in the document that the router does not have: {extra:?}"
        );
    }

    #[test]
    fn every_protected_operation_answers_the_token_errors_and_the_doc_needs_no_token() {
        let value = serde_json::to_value(document()).unwrap_or_default();
        assert_eq!(value["openapi"], "3.1.0");
        assert_eq!(
            value["components"]["securitySchemes"][SECURITY_SCHEME]["scheme"],
            "bearer"
        );
        for (path, item) in value["paths"].as_object().into_iter().flatten() {
            for (method, operation) in item.as_object().into_iter().flatten() {
                let responses = &operation["responses"];
                if operation["operationId"] == DOCUMENT_OPERATION {
                    assert_eq!(operation["security"], serde_json::json!([{}]));
                    assert!(responses.get("401").is_none());
                    continue;
                }
                for status in ["401", "429", "503"] {
                    assert!(
                        responses.get(status).is_some(),
                        "{method} {path} does not document {status}"
                    );
                }
                assert!(
                    responses
                        .as_object()
                        .into_iter()
                        .flatten()
                        .any(|(status, _)| status.starts_with('2')),
                    "{method} {path} documents no success"
                );
            }
        }
    }

    #[test]
    fn the_status_enum_of_the_document_is_every_channel_status() {
        let value = serde_json::to_value(document()).unwrap_or_default();
        let listed: BTreeSet<String> = value["components"]["schemas"]["StatusName"]["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        let statuses: BTreeSet<String> = ChannelStatus::ALL
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        assert_eq!(listed, statuses);
    }

    #[actix_rt::test]
    async fn get_api_openapi_json_answers_the_document_as_json_without_a_token() {
        use actix_web::test;
        let app = test::init_service(actix_web::App::new().service(admin::scope())).await;
        let response = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/api/openapi.json")
                .to_request(),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        let body = test::read_body(response).await;
        let served: serde_json::Value =
            serde_json::from_slice(&body).expect("the document is valid JSON");
        assert_eq!(
            served,
            serde_json::to_value(document()).expect("serializes")
        );
        assert!(served["paths"]["/api/channels/{id}"]["patch"].is_object());
    }
}
