//! The Microsoft Graph mail client: list unread mail, read attachments, mark mail read in `$batch`.
//!
//! Two ways to find mail: the unread list (`$filter=isRead eq false`) and the folder's delta query
//! (every change since the last round, read or not; `Prefer: odata.maxpagesize`). Pages decode item
//! by item ([`model::Page`]), so one malformed item is reported, not fatal to its page.
//!
//! It knows Graph's URLs, headers and JSON and nothing of actors: callers pass the access token and
//! decide what to do with a [`GraphError`] through its policy methods. Every request carries
//! `Prefer: IdType="ImmutableId"` and the body content type, so ids survive folder moves.
//! Links Graph returns are followed only when they point at the configured Graph origin, so a
//! forged `@odata.nextLink` cannot carry a token elsewhere.

mod error;
pub mod model;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde::de::DeserializeOwned;

pub use error::{GraphError, INSUFFICIENT_CLAIMS, RequestIds};
use model::{AttachmentPage, BatchResponse, ErrorBody, Page, RawPage, WireAttachment};

use crate::domain::{Folder, HttpUrl, Mailbox};

/// `$batch` takes at most this many requests.
pub const MAX_BATCH: usize = 20;

/// The message fields inboxd reads (`$select`): what the sinks need and nothing more.
pub const SELECT: &str = "id,internetMessageId,subject,from,toRecipients,ccRecipients,receivedDateTime,body,hasAttachments,isRead,conversationId";

/// Characters escaped in a path segment or query value.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'@');

/// The body format asked of Graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyContentType {
    /// Plain text.
    Text,
    /// HTML (Graph's default).
    Html,
}

impl BodyContentType {
    fn prefer(self) -> &'static str {
        match self {
            BodyContentType::Text => r#"IdType="ImmutableId", outlook.body-content-type="text""#,
            BodyContentType::Html => r#"IdType="ImmutableId", outlook.body-content-type="html""#,
        }
    }
}

/// What became of one message in a mark-read `$batch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkReadOutcome {
    /// Marked read.
    Done,
    /// The message is gone (deleted or moved meanwhile): nothing left to mark.
    Gone,
    /// This item was throttled; try it again after the delay.
    Throttled(Option<Duration>),
    /// This item failed; the error says whether to retry.
    Failed(GraphError),
}

/// A cheap-to-clone Graph client sharing one connection pool.
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    /// The Graph origin, e.g. `https://graph.microsoft.com`, without a trailing slash.
    base: Arc<str>,
    headers: HeaderMap,
    timeout: Duration,
}

impl GraphClient {
    /// A client for the Graph origin `graph_url` on the shared HTTP client.
    pub fn new(
        http: reqwest::Client,
        graph_url: &HttpUrl,
        body: BodyContentType,
        timeout: Duration,
    ) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert("Prefer", HeaderValue::from_static(body.prefer()));
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        GraphClient {
            http,
            base: Arc::from(graph_url.base()),
            headers,
            timeout,
        }
    }

    /// The first page of unread mail received at or after `since`, oldest first, `top` per page.
    pub fn unread_url(
        &self,
        mailbox: &Mailbox,
        folder: &Folder,
        since: DateTime<Utc>,
        top: u32,
    ) -> String {
        self.received_since(mailbox, folder, since, " and isRead eq false", top)
    }

    /// The first page of every message (read or not) received at or after `since`, oldest first:
    /// a backfill.
    pub fn received_since_url(
        &self,
        mailbox: &Mailbox,
        folder: &Folder,
        since: DateTime<Utc>,
        top: u32,
    ) -> String {
        self.received_since(mailbox, folder, since, "", top)
    }

    /// A folder's messages received at or after `since` (and matching `and_filter`), oldest
    /// first. `$orderby` needs its property first in `$filter` (Graph's InefficientFilter rule).
    fn received_since(
        &self,
        mailbox: &Mailbox,
        folder: &Folder,
        since: DateTime<Utc>,
        and_filter: &str,
        top: u32,
    ) -> String {
        let filter = format!(
            "receivedDateTime ge {}{and_filter}",
            since.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        format!(
            "{}/v1.0/users/{}/mailFolders/{}/messages?$filter={}&$orderby={}&$select={}&$top={}",
            self.base,
            utf8_percent_encode(mailbox.as_str(), COMPONENT),
            utf8_percent_encode(folder.as_str(), COMPONENT),
            utf8_percent_encode(&filter, COMPONENT),
            utf8_percent_encode("receivedDateTime asc", COMPONENT),
            utf8_percent_encode(SELECT, COMPONENT),
            top.clamp(1, 1000),
        )
    }

    /// Fetches one page: the first (from [`unread_url`](Self::unread_url)) or an `@odata.nextLink`.
    pub async fn list_page(&self, token: &str, url: &str) -> Result<Page, GraphError> {
        if !self.is_ours(url) {
            return Err(GraphError::Decode(
                "a paging link points outside the configured graph_url".to_owned(),
            ));
        }
        let raw: RawPage = self.get_json(token, url, "messages").await?;
        Ok(Page::from(raw))
    }

    /// The start of a delta round over a folder with no delta link yet: every message received
    /// at or after `since` (the filter is carried by the links Graph returns).
    pub fn delta_url(&self, mailbox: &Mailbox, folder: &Folder, since: DateTime<Utc>) -> String {
        let filter = format!(
            "receivedDateTime ge {}",
            since.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        format!(
            "{}/v1.0/users/{}/mailFolders/{}/messages/delta?$select={}&$filter={}",
            self.base,
            utf8_percent_encode(mailbox.as_str(), COMPONENT),
            utf8_percent_encode(folder.as_str(), COMPONENT),
            utf8_percent_encode(SELECT, COMPONENT),
            utf8_percent_encode(&filter, COMPONENT),
        )
    }

    /// Fetches one page of a delta round: the start, an `@odata.nextLink` or a stored
    /// `@odata.deltaLink`, at most `page_size` items (`Prefer: odata.maxpagesize`).
    pub async fn delta_page(
        &self,
        token: &str,
        url: &str,
        page_size: u32,
    ) -> Result<Page, GraphError> {
        if !self.is_ours(url) {
            return Err(GraphError::Decode(
                "a delta link points outside the configured graph_url".to_owned(),
            ));
        }
        let mut headers = self.headers.clone();
        let prefer = headers
            .get("Prefer")
            .and_then(|v| v.to_str().ok())
            .map(|v| format!("{v}, odata.maxpagesize={}", page_size.clamp(1, 1000)));
        if let Some(value) = prefer.and_then(|v| HeaderValue::from_str(&v).ok()) {
            headers.insert("Prefer", value);
        }
        let request = self.http.get(url).headers(headers).bearer_auth(token);
        let raw: RawPage = self.send(request, "delta").await?;
        Ok(Page::from(raw))
    }

    /// Reads a message's attachments (content included for file attachments).
    pub async fn list_attachments(
        &self,
        token: &str,
        mailbox: &Mailbox,
        message_id: &str,
    ) -> Result<Vec<WireAttachment>, GraphError> {
        let url = format!(
            "{}/v1.0/users/{}/messages/{}/attachments",
            self.base,
            utf8_percent_encode(mailbox.as_str(), COMPONENT),
            utf8_percent_encode(message_id, COMPONENT),
        );
        let page: AttachmentPage = self.get_json(token, &url, "attachments").await?;
        Ok(page.value)
    }

    /// Reads one message.
    pub async fn get_message(
        &self,
        token: &str,
        mailbox: &Mailbox,
        message_id: &str,
    ) -> Result<model::WireMessage, GraphError> {
        let url = format!(
            "{}/v1.0/users/{}/messages/{}?$select={}",
            self.base,
            utf8_percent_encode(mailbox.as_str(), COMPONENT),
            utf8_percent_encode(message_id, COMPONENT),
            utf8_percent_encode(SELECT, COMPONENT),
        );
        self.get_json(token, &url, "message").await
    }

    /// Marks up to [`MAX_BATCH`] messages read in one `$batch`, and says what became of each.
    /// An error is returned only when the batch as a whole failed.
    pub async fn mark_read(
        &self,
        token: &str,
        mailbox: &Mailbox,
        message_ids: &[String],
    ) -> Result<Vec<(String, MarkReadOutcome)>, GraphError> {
        let ids = &message_ids[..message_ids.len().min(MAX_BATCH)];
        let user = utf8_percent_encode(mailbox.as_str(), COMPONENT).to_string();
        let requests: Vec<model::BatchRequestItem> = ids
            .iter()
            .enumerate()
            .map(|(index, id)| model::BatchRequestItem {
                id: index.to_string(),
                method: "PATCH",
                url: format!(
                    "/users/{user}/messages/{}",
                    utf8_percent_encode(id, COMPONENT)
                ),
                headers: model::BatchRequestHeaders {
                    content_type: "application/json",
                    prefer: r#"IdType="ImmutableId""#,
                },
                body: model::MarkReadBody { is_read: true },
            })
            .collect();
        let body = model::BatchRequest { requests };
        let url = format!("{}/v1.0/$batch", self.base);
        let request = self
            .http
            .post(&url)
            .headers(self.headers.clone())
            .bearer_auth(token)
            .json(&body);
        let batch: BatchResponse = self.send(request, "batch").await?;
        let mut outcomes: Vec<(String, MarkReadOutcome)> = Vec::with_capacity(ids.len());
        for (index, id) in ids.iter().enumerate() {
            let key = index.to_string();
            let outcome = match batch
                .responses
                .iter()
                .find(|item| item.id.eq_ignore_ascii_case(&key))
            {
                None => MarkReadOutcome::Failed(GraphError::Decode(format!(
                    "no response for batch item {key}"
                ))),
                Some(item) => batch_item_outcome(item),
            };
            outcomes.push((id.clone(), outcome));
        }
        Ok(outcomes)
    }

    fn is_ours(&self, url: &str) -> bool {
        url.strip_prefix(&*self.base)
            .is_some_and(|rest| rest.starts_with('/'))
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        token: &str,
        url: &str,
        endpoint: &'static str,
    ) -> Result<T, GraphError> {
        let request = self
            .http
            .get(url)
            .headers(self.headers.clone())
            .bearer_auth(token);
        self.send(request, endpoint).await
    }

    /// Sends one request and reads its answer, counting it under `endpoint` (one of
    /// [`GRAPH_ENDPOINTS`](crate::telemetry::metrics::GRAPH_ENDPOINTS)) with its status class
    /// and duration, whatever the outcome.
    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        endpoint: &'static str,
    ) -> Result<T, GraphError> {
        let started = std::time::Instant::now();
        let (status, result) = self.exchange(request).await;
        crate::telemetry::metrics::graph_request(endpoint, status, started.elapsed());
        result
    }

    /// [`send`](Self::send) without the counting: the status (`None` without an HTTP answer) and
    /// the decoded body or the error.
    async fn exchange<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> (Option<u16>, Result<T, GraphError>) {
        // A fresh id per request, echoed by Graph: the operator can quote it to Microsoft.
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let response = match request
            .header("client-request-id", &client_request_id)
            .header("return-client-request-id", "true")
            .timeout(self.timeout)
            .send()
            .await
        {
            Ok(response) => response,
            Err(err) => return (None, Err(transport_error(err))),
        };
        let status = response.status().as_u16();
        (
            Some(status),
            self.answer(status, response, client_request_id).await,
        )
    }

    /// Reads an answer of `status`: the decoded body, or the error it describes.
    async fn answer<T: DeserializeOwned>(
        &self,
        status: u16,
        response: reqwest::Response,
        client_request_id: String,
    ) -> Result<T, GraphError> {
        let response_request_id = header(response.headers(), "request-id");
        let claims_challenge = header(response.headers(), "www-authenticate")
            .is_some_and(|v| v.contains("insufficient_claims"));
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::retry::parse_retry_after(v, Utc::now()));
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let bytes = response.bytes().await.map_err(transport_error)?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes)
                .map_err(|err| GraphError::Decode(err.to_string()));
        }
        let detail = if is_json {
            serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.error)
                .unwrap_or_default()
        } else {
            model::ErrorDetail::default()
        };
        let ids = RequestIds {
            request_id: response_request_id.or_else(|| detail.request_id()),
            client_request_id: Some(client_request_id),
        };
        let code = if status == 401 && claims_challenge {
            INSUFFICIENT_CLAIMS.to_owned()
        } else {
            detail.code
        };
        Err(error_from_status(
            status,
            code,
            detail.message,
            retry_after,
            ids,
        ))
    }
}

fn transport_error(err: reqwest::Error) -> GraphError {
    if err.is_timeout() {
        GraphError::Timeout
    } else if err.is_decode() || err.is_body() {
        GraphError::Decode(err.to_string())
    } else {
        // Without the URL: it holds the mailbox address, which belongs in structured fields.
        GraphError::Transport(crate::retry::error_chain(&err.without_url()))
    }
}

/// Classifies an HTTP error status with Graph's code.
fn error_from_status(
    status: u16,
    code: String,
    message: String,
    retry_after: Option<Duration>,
    ids: RequestIds,
) -> GraphError {
    match status {
        429 => GraphError::Throttled {
            code,
            retry_after,
            ids,
        },
        401 => GraphError::Unauthorized { code, message, ids },
        403 => GraphError::Forbidden { code, message, ids },
        404 => GraphError::NotFound { code, message, ids },
        // 501 Not Implemented and 505: the same request will never work; not retried.
        501 | 505 => GraphError::Rejected {
            status,
            code,
            message,
            ids,
        },
        // 408: the request did not reach the service in time, as transient as a 503.
        408 | 500..=599 => GraphError::Server {
            status,
            code,
            retry_after,
            ids,
        },
        _ => GraphError::Rejected {
            status,
            code,
            message,
            ids,
        },
    }
}

/// A header's value as text.
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn batch_item_outcome(item: &model::BatchItemResponse) -> MarkReadOutcome {
    if (200..300).contains(&item.status) {
        return MarkReadOutcome::Done;
    }
    let retry_after = item.headers.as_ref().and_then(|headers| {
        let value = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))?
            .1;
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        crate::retry::parse_retry_after(&text, Utc::now())
    });
    let detail = item
        .body
        .as_ref()
        .and_then(|body| serde_json::from_str::<ErrorBody>(body.get()).ok())
        .map(|b| b.error)
        .unwrap_or_default();
    match item.status {
        404 => MarkReadOutcome::Gone,
        429 => MarkReadOutcome::Throttled(retry_after),
        status => {
            let ids = RequestIds {
                request_id: detail.request_id(),
                client_request_id: None,
            };
            MarkReadOutcome::Failed(error_from_status(
                status,
                detail.code,
                detail.message,
                retry_after,
                ids,
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn client() -> GraphClient {
        let base = HttpUrl::parse("https://graph.microsoft.com").unwrap();
        GraphClient::new(
            reqwest::Client::new(),
            &base,
            BodyContentType::Text,
            Duration::from_secs(5),
        )
    }

    #[test]
    fn the_unread_query_puts_the_order_property_first_in_the_filter() {
        let url = client().unread_url(
            &Mailbox::parse("support@contoso.com").unwrap(),
            &Folder::inbox(),
            DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            50,
        );
        assert!(url.starts_with(
            "https://graph.microsoft.com/v1.0/users/support@contoso.com/mailFolders/inbox/messages?"
        ));
        assert!(url.contains("$filter=receivedDateTime%20ge%202024-01-01T00%3A00%3A00Z%20and%20isRead%20eq%20false"), "{url}");
        assert!(url.contains("$orderby=receivedDateTime%20asc"));
        assert!(url.contains("$top=50"));
    }

    #[test]
    fn a_501_is_not_retried_and_a_claims_challenge_is_not_refreshed() {
        let ids = RequestIds::default();
        let not_implemented =
            error_from_status(501, String::new(), String::new(), None, ids.clone());
        assert!(!not_implemented.is_retriable());
        assert_eq!(not_implemented.http_status(), Some(501));
        assert!(
            error_from_status(503, String::new(), String::new(), None, ids.clone()).is_retriable()
        );
        let challenge = error_from_status(
            401,
            INSUFFICIENT_CLAIMS.to_owned(),
            String::new(),
            None,
            ids.clone(),
        );
        assert!(!challenge.needs_token_refresh());
        assert!(
            error_from_status(401, String::new(), String::new(), None, ids).needs_token_refresh()
        );
    }

    #[test]
    fn links_to_other_hosts_are_not_followed() {
        let graph = client();
        assert!(graph.is_ours("https://graph.microsoft.com/v1.0/users/a/messages?$skip=10"));
        assert!(!graph.is_ours("https://graph.microsoft.com.evil.example/v1.0/x"));
        assert!(!graph.is_ours("https://evil.example/v1.0/x"));
    }

    #[test]
    fn batch_items_are_classified() {
        let item = |status: u16, headers: serde_json::Value| model::BatchItemResponse {
            id: "1".into(),
            status,
            headers: headers.as_object().cloned(),
            body: None,
        };
        assert_eq!(
            batch_item_outcome(&item(200, serde_json::json!({}))),
            MarkReadOutcome::Done
        );
        assert_eq!(
            batch_item_outcome(&item(404, serde_json::json!({}))),
            MarkReadOutcome::Gone
        );
        assert_eq!(
            batch_item_outcome(&item(429, serde_json::json!({"Retry-After": "3"}))),
            MarkReadOutcome::Throttled(Some(Duration::from_secs(3)))
        );
        assert!(
            matches!(batch_item_outcome(&item(503, serde_json::json!({}))), MarkReadOutcome::Failed(e) if e.is_retriable())
        );
    }
}
