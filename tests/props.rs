//! Property tests of the decoders that read what the outside world sends: Graph pages and batch
//! answers, token error bodies, AADSTS descriptions, Retry-After values, domain values. Whatever the
//! bytes, no panic, and what is accepted is well-formed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use inboxd::domain::{ChannelId, ClientId, Folder, HttpUrl, Mailbox, TenantId};
use inboxd::graph::model::{BatchResponse, ErrorBody, MessagePage};
use inboxd::oauth::{MicrosoftErrorResponse, aadsts_codes, description_head, failure_from_body};
use proptest::prelude::*;

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        ".{0,20}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::hash_map(
                prop_oneof![
                    Just("value".to_owned()),
                    Just("id".to_owned()),
                    Just("@odata.nextLink".to_owned()),
                    Just("error".to_owned()),
                    Just("error_codes".to_owned()),
                    Just("responses".to_owned()),
                    Just("status".to_owned()),
                    "[a-z]{1,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn graph_decoders_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = serde_json::from_slice::<MessagePage>(&bytes);
        let _ = serde_json::from_slice::<BatchResponse>(&bytes);
        let _ = serde_json::from_slice::<ErrorBody>(&bytes);
        let _ = serde_json::from_slice::<MicrosoftErrorResponse>(&bytes);
    }

    #[test]
    fn graph_decoders_never_panic_on_json_shapes(value in json_value()) {
        let text = value.to_string();
        if let Ok(page) = serde_json::from_str::<MessagePage>(&text) {
            let mailbox = Mailbox::parse("a@contoso.example").unwrap();
            for message in page.value {
                let mail = message.into_mail(ChannelId::generate(), &mailbox);
                prop_assert!(!mail.message_id.is_empty() || text.contains("\"id\":\"\""));
            }
        }
        if let Ok(body) = serde_json::from_str::<ErrorBody>(&text) {
            let _ = body.error.request_id();
        }
        if let Ok(body) = serde_json::from_str::<MicrosoftErrorResponse>(&text) {
            let failure = failure_from_body(body, Some(400), None);
            let _ = inboxd::catalogue::classify_identity_error(&failure.error, &failure.codes, failure.description.as_deref(), Some(400));
        }
    }

    #[test]
    fn descriptions_and_retry_after_never_panic(text in ".{0,300}") {
        let codes = aadsts_codes(&text);
        prop_assert!(codes.len() <= text.matches("AADSTS").count());
        let head = description_head(&text);
        prop_assert!(!head.contains("Trace ID:"));
        let _ = inboxd::catalogue::classify_identity_error("invalid_grant", &codes, Some(&text), None);
        let _ = inboxd::retry::parse_retry_after(&text, chrono::Utc::now());
    }

    #[test]
    fn domain_values_validate_without_panicking(text in ".{0,300}") {
        if let Ok(tenant) = TenantId::parse(&text) {
            prop_assert!(!["common", "organizations", "consumers"].contains(&tenant.as_str()));
        }
        if let Ok(mailbox) = Mailbox::parse(&text) {
            prop_assert!(mailbox.as_str().contains('@'));
        }
        let _ = ClientId::parse(&text);
        if let Ok(folder) = Folder::parse(&text) {
            prop_assert!(!folder.as_str().contains('/'));
        }
        let _ = HttpUrl::parse(&text);
        let _ = ChannelId::parse(&text);
    }
}
