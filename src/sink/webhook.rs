//! The webhook sink: POSTs each record as JSON, signed with HMAC-SHA256, with an idempotency key,
//! retrying transient failures with backoff, and the signature check a receiver needs.
//!
//! Delivery is at least once: every attempt of one message carries the same `Idempotency-Key`
//! (`{channel_id}:{message_id}`) and the same body bytes, so a receiver can drop repeats.

use std::time::Duration;

use chrono::Utc;
use futures_util::stream::{self, StreamExt as _};
use hmac::{Hmac, Mac as _};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;

use crate::domain::HttpUrl;
use crate::domain::secret::WebhookSecret;
use crate::retry::{Backoff, BackoffPolicy, parse_retry_after};
use crate::sink::{SinkError, SinkRecord};

/// The header that carries `sha256=<lowercase hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Inboxd-Signature";

/// The header that carries `{channel_id}:{message_id}`.
const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// How much of a receiver's error answer goes into an error message.
const EXCERPT_BYTES: usize = 512;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &WebhookSecret, body: &[u8]) -> Option<HmacSha256> {
    // HMAC takes keys of any length, so this never fails; no panic path all the same.
    let mut mac = <HmacSha256 as hmac::Mac>::new_from_slice(secret.expose().as_bytes()).ok()?;
    mac.update(body);
    Some(mac)
}

/// The `X-Inboxd-Signature` value of `body`: `sha256=` and the lowercase hex HMAC-SHA256 of the exact
/// body bytes. `None` only if the HMAC could not be keyed, which HMAC-SHA256 never refuses.
pub fn sign(secret: &WebhookSecret, body: &[u8]) -> Option<String> {
    let tag = mac(secret, body)?.finalize().into_bytes();
    Some(format!("sha256={}", hex::encode(tag)))
}

/// Whether `header` (an `X-Inboxd-Signature` value) is the signature of `body` under `secret`,
/// compared in constant time. Receivers and tests use it.
pub fn verify_signature(secret: &WebhookSecret, body: &[u8], header: &str) -> bool {
    let Some(hex_tag) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_tag) else {
        return false;
    };
    let Some(mac) = mac(secret, body) else {
        return false;
    };
    let expected = mac.finalize().into_bytes();
    expected.as_slice().ct_eq(given.as_slice()).into()
}

/// Delivers records to an HTTP receiver.
#[derive(Clone)]
pub struct WebhookSink {
    http: reqwest::Client,
    url: HttpUrl,
    secret: Option<WebhookSecret>,
    timeout: Duration,
    max_attempts: u32,
    backoff: BackoffPolicy,
}

impl std::fmt::Debug for WebhookSink {
    /// The receiver's origin only (a path may hold a token) and never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("origin", &self.origin())
            .field("signed", &self.secret.is_some())
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
enum Attempt {
    /// Try again, not before the floor.
    Retry {
        what: String,
        retry_after: Option<Duration>,
    },
    /// Stop with this answer.
    Done(Result<(), SinkError>),
}

impl WebhookSink {
    /// A sink that POSTs to `url`, signs with `secret` when there is one, waits `timeout` per attempt
    /// and tries at most `max_attempts` times (at least once) on the `backoff` schedule.
    pub fn new(
        http: reqwest::Client,
        url: HttpUrl,
        secret: Option<WebhookSecret>,
        timeout: Duration,
        max_attempts: u32,
        backoff: BackoffPolicy,
    ) -> Self {
        WebhookSink {
            http,
            url,
            secret,
            timeout,
            max_attempts: max_attempts.max(1),
            backoff,
        }
    }

    /// The receiver's origin, for messages: the path may hold a token, so it is left out.
    fn origin(&self) -> String {
        self.url.as_url().origin().ascii_serialization()
    }

    /// POSTs one record. Any 2xx is success. Timeouts, connection errors, 5xx, 408 and 429 are
    /// retried with backoff (a `Retry-After` on 429 or 503 is a floor) up to `max_attempts`, then
    /// [`SinkError::Unavailable`]; any other 4xx is [`SinkError::Rejected`] at once.
    pub async fn deliver(&self, record: &SinkRecord) -> Result<(), SinkError> {
        let key = record.key();
        let body = serde_json::to_vec(record).map_err(|err| SinkError::Encode {
            key: key.clone(),
            reason: err.to_string(),
        })?;
        let signature = match &self.secret {
            Some(secret) => Some(sign(secret, &body).ok_or_else(|| {
                SinkError::unavailable(
                    "the webhook secret cannot key HMAC-SHA256: set INBOXD_WEBHOOK_SECRET again",
                )
            })?),
            None => None,
        };
        let mut backoff = Backoff::new(self.backoff);
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            match self.attempt(&key, &body, signature.as_deref()).await {
                Attempt::Done(result) => return result,
                Attempt::Retry { what, retry_after } => {
                    if attempt < self.max_attempts {
                        let delay = backoff.next_delay(retry_after);
                        tracing::warn!(
                            key = %key,
                            attempt,
                            max_attempts = self.max_attempts,
                            error = %what,
                            delay_ms = delay.as_millis() as u64,
                            "webhook delivery failed; retrying"
                        );
                        tokio::time::sleep(delay).await;
                    }
                    last = what;
                }
            }
        }
        Err(SinkError::unavailable(format!(
            "the webhook receiver at {} did not accept message {key} after {} attempts (last: \
             {last}): check that the receiver is up and answers within {:?}; inboxd resumes by itself",
            self.origin(),
            self.max_attempts,
            self.timeout,
        )))
    }

    async fn attempt(&self, key: &str, body: &[u8], signature: Option<&str>) -> Attempt {
        let mut request = self
            .http
            .post(self.url.as_url().clone())
            .timeout(self.timeout)
            .header(CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_HEADER, key)
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                let err = err.without_url();
                if err.is_builder() {
                    return Attempt::Done(Err(SinkError::unavailable(format!(
                        "the webhook request to {} could not be built ({err}): check \
                         processor.webhook_url",
                        self.origin()
                    ))));
                }
                let what = if err.is_timeout() {
                    format!("no answer within {:?}", self.timeout)
                } else if err.is_connect() {
                    format!("could not connect ({err})")
                } else {
                    format!("the request failed ({err})")
                };
                return Attempt::Retry {
                    what,
                    retry_after: None,
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Done(Ok(()));
        }
        let retry_after = if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, Utc::now()))
        } else {
            None
        };
        let excerpt = excerpt(response).await;
        if status.is_server_error()
            || matches!(
                status,
                StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS
            )
        {
            return Attempt::Retry {
                what: format!("HTTP {} {excerpt}", status.as_u16()),
                retry_after,
            };
        }
        if status.is_client_error() {
            return Attempt::Done(Err(SinkError::Rejected {
                status: status.as_u16(),
                reason: format!(
                    "the receiver answered {excerpt}; fix the receiver or its validation: the \
                     message is retried and quarantined after repeated rejections"
                ),
            }));
        }
        Attempt::Done(Err(SinkError::unavailable(format!(
            "the webhook at {} answered HTTP {} {excerpt}, which is not a success and is not \
             followed: set processor.webhook_url to the receiver's final URL",
            self.origin(),
            status.as_u16()
        ))))
    }

    /// Delivers the records with at most `concurrency` in flight (at least one), answering in the
    /// order of `records`.
    pub async fn deliver_many(
        &self,
        records: &[SinkRecord],
        concurrency: usize,
    ) -> Vec<Result<(), SinkError>> {
        stream::iter(records)
            .map(|record| self.deliver(record))
            .buffered(concurrency.max(1))
            .collect()
            .await
    }
}

/// The start of a response body, as text, for error messages.
async fn excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(EXCERPT_BYTES);
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        format!("({text})")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_and_secret() {
        let secret = WebhookSecret::new("s3cret").unwrap();
        let body = br#"{"a":1}"#;
        let header = sign(&secret, body).unwrap();
        assert!(header.starts_with("sha256="));
        assert_eq!(header.len(), "sha256=".len() + 64);
        assert_eq!(header, header.to_lowercase());
        assert!(verify_signature(&secret, body, &header));
        assert!(!verify_signature(&secret, br#"{"a":2}"#, &header));
        let other = WebhookSecret::new("other").unwrap();
        assert!(!verify_signature(&other, body, &header));
        assert!(!verify_signature(
            &secret,
            body,
            header.trim_start_matches("sha256=")
        ));
        assert!(!verify_signature(&secret, body, "sha256=zz"));
        assert!(!verify_signature(
            &secret,
            body,
            &header[..header.len() - 2]
        ));
    }

    #[test]
    fn debug_shows_neither_the_secret_nor_the_path() {
        let sink = WebhookSink::new(
            reqwest::Client::new(),
            HttpUrl::parse("https://hooks.example.com/t/abc123token").unwrap(),
            Some(WebhookSecret::new("s3cret-value").unwrap()),
            Duration::from_secs(1),
            3,
            BackoffPolicy::default(),
        );
        let debug = format!("{sink:?}");
        assert!(debug.contains("https://hooks.example.com"), "{debug}");
        assert!(!debug.contains("abc123token"), "{debug}");
        assert!(!debug.contains("s3cret-value"), "{debug}");
    }

    #[test]
    fn the_signature_matches_a_known_vector() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let secret = WebhookSecret::new("Jefe").unwrap();
        assert_eq!(
            sign(&secret, b"what do ya want for nothing?").unwrap(),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
