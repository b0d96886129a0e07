//! Small helpers shared by the simulator's endpoints: timestamps in Microsoft's formats, request
//! bodies read under a size limit, the request's own origin, and the fault effects that every
//! endpoint applies the same way (connection reset, malformed body).

use actix_web::HttpRequest;
use actix_web::web::{Bytes, Payload};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;

/// `2016-01-09 02:02:12Z`: the STS `timestamp` form (space, no fraction).
pub fn sts_timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// `2016-10-19T10:37:00Z`: Graph's date-time values.
pub fn graph_datetime(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `2025-02-13T10:17:05`: Graph's `innerError.date` (no zone, no fraction).
pub fn inner_error_date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("request body could not be read: {0}")]
    Read(String),
}

/// Reads a request body, refusing more than `limit` bytes.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: Payload,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if let Some(len) = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > limit
    {
        return Err(BodyError::TooLarge(limit));
    }
    let mut buf = actix_web::web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The origin the client used to reach the simulator (`http://127.0.0.1:1234`).
pub fn origin(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

/// Parses an `application/x-www-form-urlencoded` body or query into pairs.
pub fn form_pairs(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

/// The first value of `key` in pairs.
pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A response whose head and first body bytes are sent, then the connection drops mid-body.
pub fn reset_response(status: actix_web::http::StatusCode) -> actix_web::HttpResponse {
    let stream = futures_util::stream::unfold(0u8, |step| async move {
        match step {
            0 => Some((
                Ok::<Bytes, std::io::Error>(Bytes::from_static(b"{\"value\":[{\"id\":\"AAMk")),
                1,
            )),
            1 => {
                // Let the head and the first chunk reach the client before failing.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "simulated connection reset",
                    )),
                    2,
                ))
            }
            _ => None,
        }
    });
    actix_web::HttpResponse::build(status)
        .content_type("application/json")
        .streaming(stream)
}

/// A 200 whose JSON body is cut off.
pub fn malformed_response() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .body("{\"@odata.context\":\"https://graph.microsoft.com/v1.0/$metadata#users('x')/messages\",\"value\":[{\"id\":\"AAMkAGI2")
}

/// Formats a `Retry-After` value: integers without a fraction, else up to 3 decimals.
pub fn retry_after_value(secs: f64) -> String {
    if (secs - secs.round()).abs() < 1e-9 {
        format!("{}", secs.round() as i64)
    } else {
        let s = format!("{secs:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// `2022-03-02T03:54:33.8043551`: .NET's seven-digit fractional form (no zone).
pub fn ticks_datetime(t: DateTime<Utc>) -> String {
    use chrono::Timelike;
    format!(
        "{}.{:07}",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.nanosecond() / 100
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_and_timestamps_use_microsofts_forms() {
        assert_eq!(retry_after_value(2.0), "2");
        assert_eq!(retry_after_value(2.128), "2.128");
        assert_eq!(retry_after_value(1.5), "1.5");
        let t = chrono::DateTime::parse_from_rfc3339("2016-01-09T02:02:12.8043551Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(sts_timestamp(t), "2016-01-09 02:02:12Z");
        assert_eq!(graph_datetime(t), "2016-01-09T02:02:12Z");
        assert_eq!(inner_error_date(t), "2016-01-09T02:02:12");
        assert_eq!(ticks_datetime(t), "2016-01-09T02:02:12.8043551");
    }
}
