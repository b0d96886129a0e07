//! The sinks against real files and a real HTTP receiver: the JSONL sink's round trip, crash repair,
//! recovery and failure handling, and the webhook sink's headers, signature, retries and rejections.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chrono::Utc;
use inboxd::domain::secret::WebhookSecret;
use inboxd::domain::{Address, Attachment, ChannelId, HttpUrl, MailItem, Mailbox};
use inboxd::retry::BackoffPolicy;
use inboxd::sink::{
    JsonlSink, SIGNATURE_HEADER, SinkError, SinkRecord, WebhookSink, verify_signature,
};

fn mail(channel: &ChannelId, n: usize) -> MailItem {
    MailItem {
        channel_id: *channel,
        mailbox: Mailbox::parse("support@contoso.com").unwrap(),
        message_id: format!("AAMkAD-{n}=="),
        internet_message_id: Some(format!("<{n}@fabrikam.com>")),
        kind: "#microsoft.graph.message".to_owned(),
        received_at: Some(Utc::now()),
        from: Some(Address {
            name: "Zoë \"Z\" Müller".to_owned(),
            address: "zoe@fabrikam.com".to_owned(),
        }),
        to: vec![Address {
            name: String::new(),
            address: "support@contoso.com".to_owned(),
        }],
        cc: Vec::new(),
        subject: format!("Ticket {n}: line\nbreak"),
        body_content_type: "html".to_owned(),
        body: format!("<p>message {n}</p>\r\n<p>✓</p>"),
        conversation_id: Some("AAQkAD".to_owned()),
        has_attachments: true,
        attachments: vec![Attachment {
            id: "att".to_owned(),
            name: "a.txt".to_owned(),
            content_type: "text/plain".to_owned(),
            size_bytes: 2,
            is_inline: false,
            content_base64: Some("aGk=".to_owned()),
        }],
    }
}

fn record(channel: &ChannelId, n: usize) -> SinkRecord {
    SinkRecord::from_mail(&mail(channel, n), Utc::now())
}

fn key_of(record: &SinkRecord) -> (String, String) {
    (record.channel_id.clone(), record.message_id.clone())
}

fn lines(path: &Path) -> Vec<SinkRecord> {
    let text = fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'));
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

// ---------------------------------------------------------------- JSONL

#[test]
fn each_line_parses_back_to_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not/yet/there/mail.jsonl");
    let (mut sink, recovery) = JsonlSink::open(&path, 0).unwrap();
    assert!(recovery.keys.is_empty());
    assert_eq!(recovery.end_offset, 0);

    let channel = ChannelId::generate();
    let records: Vec<SinkRecord> = (0..3).map(|n| record(&channel, n)).collect();
    let end = sink.append(&records).unwrap();
    assert_eq!(end, fs::metadata(&path).unwrap().len());
    assert_eq!(sink.offset(), end);
    assert_eq!(lines(&path), records);

    // An empty batch writes nothing.
    assert_eq!(sink.append(&[]).unwrap(), end);
    assert_eq!(fs::metadata(&path).unwrap().len(), end);

    // The wire shape has the documented field names.
    let text = fs::read_to_string(&path).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for field in [
        "channel_id",
        "mailbox",
        "message_id",
        "internet_message_id",
        "received_at",
        "from",
        "to",
        "cc",
        "subject",
        "body_content_type",
        "body",
        "has_attachments",
        "attachments",
        "kind",
        "conversation_id",
        "ingested_at",
    ] {
        assert!(first.get(field).is_some(), "missing {field}");
    }
    assert_eq!(first["channel_id"], channel.to_string());
}

#[test]
fn a_partial_last_line_is_truncated_on_open_and_earlier_lines_stay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail.jsonl");
    let channel = ChannelId::generate();
    let records = vec![record(&channel, 1), record(&channel, 2)];
    let end = {
        let (mut sink, _) = JsonlSink::open(&path, 0).unwrap();
        sink.append(&records).unwrap()
    };
    let whole = fs::read(&path).unwrap();
    // A crash in the middle of the next write.
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(br#"{"channel_id":"x","message_id":"half"#)
        .unwrap();

    let (sink, recovery) = JsonlSink::open(&path, 0).unwrap();
    assert_eq!(fs::read(&path).unwrap(), whole);
    assert_eq!(recovery.end_offset, end);
    assert_eq!(sink.offset(), end);
    assert_eq!(
        recovery.keys,
        records.iter().map(key_of).collect::<Vec<_>>()
    );

    // A file that is nothing but a partial line becomes empty.
    let only = dir.path().join("only.jsonl");
    fs::write(&only, b"{\"channel_id\":").unwrap();
    let (_, recovery) = JsonlSink::open(&only, 0).unwrap();
    assert_eq!(recovery.end_offset, 0);
    assert!(recovery.keys.is_empty());
    assert_eq!(fs::metadata(&only).unwrap().len(), 0);
}

#[test]
fn recovery_returns_exactly_the_lines_after_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail.jsonl");
    let a = ChannelId::generate();
    let b = ChannelId::generate();
    let records: Vec<SinkRecord> = vec![
        record(&a, 1),
        record(&b, 1),
        record(&a, 2),
        record(&b, 2),
        record(&a, 3),
    ];
    let (mut sink, _) = JsonlSink::open(&path, 0).unwrap();
    let first = sink.append(&records[..2]).unwrap();
    let second = sink.append(&records[2..3]).unwrap();
    let end = sink.append(&records[3..]).unwrap();
    drop(sink);
    let keys =
        |range: std::ops::Range<usize>| records[range].iter().map(key_of).collect::<Vec<_>>();

    let (_, recovery) = JsonlSink::open(&path, first).unwrap();
    assert_eq!(recovery.keys, keys(2..5));
    assert_eq!(recovery.end_offset, end);

    let (_, recovery) = JsonlSink::open(&path, second).unwrap();
    assert_eq!(recovery.keys, keys(3..5));

    let (_, recovery) = JsonlSink::open(&path, end).unwrap();
    assert!(recovery.keys.is_empty());

    let (_, recovery) = JsonlSink::open(&path, 0).unwrap();
    assert_eq!(recovery.keys, keys(0..5));

    // A checkpoint inside line 3 goes back to that line's start: reporting a line that is in the
    // file is harmless, missing one would write it twice.
    let (_, recovery) = JsonlSink::open(&path, first + 7).unwrap();
    assert_eq!(recovery.keys, keys(2..5));
    let (_, recovery) = JsonlSink::open(&path, second - 1).unwrap();
    assert_eq!(recovery.keys, keys(2..5));

    // A checkpoint past the end (the file was replaced by a shorter one) scans all of it.
    let (_, recovery) = JsonlSink::open(&path, end + 1000).unwrap();
    assert_eq!(recovery.keys, keys(0..5));
    assert_eq!(recovery.end_offset, end);

    // A line that is not a record is skipped, not fatal.
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"not json\n")
        .unwrap();
    let (_, recovery) = JsonlSink::open(&path, second).unwrap();
    assert_eq!(recovery.keys, keys(3..5));
    assert_eq!(recovery.end_offset, end + 9);
}

#[test]
fn append_after_reopen_continues_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail.jsonl");
    let channel = ChannelId::generate();
    let mut all = vec![record(&channel, 1), record(&channel, 2)];
    let end = {
        let (mut sink, _) = JsonlSink::open(&path, 0).unwrap();
        sink.append(&all).unwrap()
    };
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"partial")
        .unwrap();

    let (mut sink, recovery) = JsonlSink::open(&path, end).unwrap();
    assert!(recovery.keys.is_empty());
    let more = vec![
        record(&channel, 3),
        record(&channel, 4),
        record(&channel, 5),
    ];
    let new_end = sink.append(&more).unwrap();
    all.extend(more);
    assert_eq!(new_end, fs::metadata(&path).unwrap().len());
    assert_eq!(lines(&path), all);

    let (_, recovery) = JsonlSink::open(&path, end).unwrap();
    assert_eq!(
        recovery.keys,
        all[2..].iter().map(key_of).collect::<Vec<_>>()
    );
}

#[test]
fn a_new_jsonl_file_and_the_directory_made_for_it_are_owner_only_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    // The only test of this binary that touches the process-wide umask.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("made").join("mail.jsonl");
    let channel = ChannelId::generate();
    let (mut sink, _) = JsonlSink::open(&path, 0).unwrap();
    sink.append(&[record(&channel, 1)]).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&path), 0o600, "the JSONL file");
    assert_eq!(
        mode(path.parent().unwrap()),
        0o700,
        "the directory inboxd made"
    );
    // A directory that was there already is left as it is.
    let existing = dir.path().join("existing");
    fs::create_dir(&existing).unwrap();
    fs::set_permissions(&existing, fs::Permissions::from_mode(0o750)).unwrap();
    let path = existing.join("mail.jsonl");
    drop(JsonlSink::open(&path, 0).unwrap());
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&existing), 0o750);
}

#[test]
fn a_directory_where_the_file_should_be_makes_the_sink_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail.jsonl");
    fs::create_dir(&path).unwrap();
    let err = JsonlSink::open(&path, 0).unwrap_err();
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err:?}");
    assert!(!err.is_message_fault());
    assert!(!err.is_disk_full());
    assert!(err.to_string().contains("is a directory"), "{err}");

    // A parent that is a file.
    let file = dir.path().join("plain");
    fs::write(&file, b"x").unwrap();
    let err = JsonlSink::open(&file.join("mail.jsonl"), 0).unwrap_err();
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err:?}");
    assert_eq!(fs::read(&file).unwrap(), b"x");
}

#[test]
fn a_full_disk_is_unavailable_and_disk_full() {
    // /dev/full answers every write with ENOSPC.
    let path = Path::new("/dev/full");
    assert!(path.exists(), "this test needs /dev/full");
    let (mut sink, recovery) = JsonlSink::open(path, 0).unwrap();
    assert!(recovery.keys.is_empty());
    let err = sink
        .append(&[record(&ChannelId::generate(), 1)])
        .unwrap_err();
    assert!(err.is_disk_full(), "{err:?}");
    assert!(!err.is_message_fault());
    assert!(err.to_string().contains("free space"), "{err}");
    assert_eq!(sink.offset(), 0);
}

const FSIZE_CHILD: &str = "INBOXD_SINK_TEST_FSIZE_CHILD";

/// Runs in a child process whose file-size limit cuts the big write short (EFBIG after a partial
/// write): the sink must truncate back, report a full disk, and append cleanly afterwards.
fn file_size_limit_child(path: &Path) {
    let before = fs::read(path).unwrap();
    let (mut sink, recovery) = JsonlSink::open(path, 0).unwrap();
    assert_eq!(recovery.keys.len(), 3);
    let channel = ChannelId::generate();
    let mut big = record(&channel, 100);
    big.body = "x".repeat(1 << 20);
    let err = sink.append(&[record(&channel, 99), big]).unwrap_err();
    assert!(err.is_disk_full(), "{err:?}");
    assert!(!err.is_message_fault());
    assert_eq!(
        fs::read(path).unwrap(),
        before,
        "the failed batch left bytes behind"
    );
    assert_eq!(sink.offset(), before.len() as u64);
    let end = sink.append(&[record(&channel, 7)]).unwrap();
    assert_eq!(end, fs::metadata(path).unwrap().len());
    println!("CHILD-OK");
}

#[test]
fn a_write_cut_short_by_the_file_size_limit_leaves_the_file_as_it_was() {
    if let Some(path) = std::env::var_os(FSIZE_CHILD) {
        file_size_limit_child(Path::new(&path));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail.jsonl");
    let channel = ChannelId::generate();
    let first: Vec<SinkRecord> = (0..3).map(|n| record(&channel, n)).collect();
    {
        let (mut sink, _) = JsonlSink::open(&path, 0).unwrap();
        sink.append(&first).unwrap();
    }
    let before_len = fs::metadata(&path).unwrap().len();
    assert!(
        before_len < 8 * 1024,
        "the limit below must be above the file"
    );

    // 16 blocks is 8 KiB (dash) or 16 KiB (bash); SIGXFSZ ignored so the write fails with EFBIG.
    let output = Command::new("sh")
        .arg("-c")
        .arg(
            "trap '' XFSZ; ulimit -f 16 && exec \"$0\" \"$1\" --exact --nocapture --test-threads=1",
        )
        .arg(std::env::current_exe().unwrap())
        .arg("a_write_cut_short_by_the_file_size_limit_leaves_the_file_as_it_was")
        .env(FSIZE_CHILD, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("CHILD-OK"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let after = lines(&path);
    assert_eq!(after.len(), 4);
    assert_eq!(after[..3], first[..]);
    assert_eq!(after[3].message_id, "AAMkAD-7==");
}

#[test]
fn a_removed_or_rotated_file_is_followed_and_a_removed_directory_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("out");
    let path = sub.join("mail.jsonl");
    let channel = ChannelId::generate();
    let (mut sink, _) = JsonlSink::open(&path, 0).unwrap();
    sink.append(&[record(&channel, 1)]).unwrap();

    // Rotation: the old file is renamed; new lines go to a new file at the path.
    let rotated = sub.join("mail.jsonl.1");
    fs::rename(&path, &rotated).unwrap();
    let end = sink.append(&[record(&channel, 2)]).unwrap();
    assert_eq!(lines(&rotated), vec![record_like(&lines(&rotated)[0], 1)]);
    assert_eq!(lines(&path).len(), 1);
    assert_eq!(lines(&path)[0].message_id, "AAMkAD-2==");
    assert_eq!(end, fs::metadata(&path).unwrap().len());

    // Removal: nothing is written into the unlinked file.
    fs::remove_file(&path).unwrap();
    sink.append(&[record(&channel, 3)]).unwrap();
    assert_eq!(lines(&path).len(), 1);
    assert_eq!(lines(&path)[0].message_id, "AAMkAD-3==");

    // The directory is gone: unavailable until it is back.
    fs::remove_dir_all(&sub).unwrap();
    let err = sink.append(&[record(&channel, 4)]).unwrap_err();
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err:?}");
    assert!(!err.is_message_fault());
    assert!(err.to_string().contains("gone"), "{err}");
    fs::create_dir(&sub).unwrap();
    sink.append(&[record(&channel, 4)]).unwrap();
    assert_eq!(lines(&path)[0].message_id, "AAMkAD-4==");
}

fn record_like(parsed: &SinkRecord, n: usize) -> SinkRecord {
    assert_eq!(parsed.message_id, format!("AAMkAD-{n}=="));
    parsed.clone()
}

#[test]
fn the_sink_moves_to_a_blocking_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<JsonlSink>();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mail.jsonl");
    let (mut sink, _) = JsonlSink::open(&path, 0).unwrap();
    let channel = ChannelId::generate();
    let batch: Vec<SinkRecord> = (0..2000).map(|n| record(&channel, n)).collect();
    let handle = std::thread::spawn(move || sink.append(&batch).map(|end| (sink, end)));
    let (sink, end) = handle.join().unwrap().unwrap();
    assert_eq!(sink.offset(), end);
    assert_eq!(lines(&path).len(), 2000);
}

// ---------------------------------------------------------------- webhook

#[derive(Clone, Copy)]
struct Reply {
    status: u16,
    delay: Duration,
    retry_after: Option<&'static str>,
}

fn reply(status: u16) -> Reply {
    Reply {
        status,
        delay: Duration::ZERO,
        retry_after: None,
    }
}

type Script = Arc<dyn Fn(&str, usize) -> Reply + Send + Sync>;

#[derive(Clone, Debug)]
struct Seen {
    key: String,
    signature: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
    at: Instant,
}

#[derive(Default)]
struct Counters {
    seen: Vec<Seen>,
    in_flight: usize,
    peak: usize,
}

struct State {
    script: Script,
    counters: Arc<Mutex<Counters>>,
}

struct Receiver {
    url: HttpUrl,
    counters: Arc<Mutex<Counters>>,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    fn seen(&self) -> Vec<Seen> {
        self.counters.lock().unwrap().seen.clone()
    }

    async fn stop(self) {
        self.handle.stop(false).await;
    }
}

fn header(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn hook(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let key = header(&req, "Idempotency-Key").unwrap_or_default();
    let attempt = {
        let mut counters = state.counters.lock().unwrap();
        counters.seen.push(Seen {
            key: key.clone(),
            signature: header(&req, SIGNATURE_HEADER),
            content_type: header(&req, "Content-Type"),
            body: body.to_vec(),
            at: Instant::now(),
        });
        counters.in_flight += 1;
        counters.peak = counters.peak.max(counters.in_flight);
        counters.seen.iter().filter(|s| s.key == key).count()
    };
    let reply = (state.script)(&key, attempt);
    if !reply.delay.is_zero() {
        // The receiver being slow, not a synchronisation.
        actix_rt::time::sleep(reply.delay).await;
    }
    state.counters.lock().unwrap().in_flight -= 1;
    let mut response = HttpResponse::build(StatusCode::from_u16(reply.status).unwrap());
    if let Some(retry_after) = reply.retry_after {
        response.insert_header(("Retry-After", retry_after));
    }
    response.body(format!("attempt {attempt}"))
}

async fn receiver(script: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Receiver {
    let counters = Arc::new(Mutex::new(Counters::default()));
    let state = web::Data::new(State {
        script: Arc::new(script),
        counters: counters.clone(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/hooks/inboxd", web::post().to(hook))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);
    Receiver {
        url: HttpUrl::parse(&format!("http://{addr}/hooks/inboxd")).unwrap(),
        counters,
        handle,
    }
}

fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(40),
        multiplier: 2.0,
        randomization_factor: 0.0,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn secret() -> WebhookSecret {
    WebhookSecret::new("whsec-test-0123456789").unwrap()
}

fn webhook(url: &HttpUrl, timeout: Duration, max_attempts: u32) -> WebhookSink {
    WebhookSink::new(
        http(),
        url.clone(),
        Some(secret()),
        timeout,
        max_attempts,
        fast_backoff(),
    )
}

#[actix_web::test]
async fn a_delivery_is_signed_and_carries_its_idempotency_key() {
    let receiver = receiver(|_, _| reply(204)).await;
    let sink = webhook(&receiver.url, Duration::from_secs(5), 3);
    let record = record(&ChannelId::generate(), 1);
    sink.deliver(&record).await.unwrap();

    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let hit = &seen[0];
    assert_eq!(hit.key, record.key());
    assert_eq!(hit.content_type.as_deref(), Some("application/json"));
    let signature = hit.signature.as_deref().unwrap();
    assert!(
        verify_signature(&secret(), &hit.body, signature),
        "{signature}"
    );
    assert!(!verify_signature(
        &WebhookSecret::new("another").unwrap(),
        &hit.body,
        signature
    ));
    let parsed: SinkRecord = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(parsed, record);

    // Without a secret there is no signature header.
    let unsigned = WebhookSink::new(
        http(),
        receiver.url.clone(),
        None,
        Duration::from_secs(5),
        1,
        fast_backoff(),
    );
    unsigned.deliver(&record).await.unwrap();
    assert_eq!(receiver.seen()[1].signature, None);
    receiver.stop().await;
}

#[actix_web::test]
async fn a_receiver_that_fails_twice_gets_three_attempts_with_one_key() {
    let receiver = receiver(|_, attempt| reply(if attempt <= 2 { 503 } else { 200 })).await;
    let sink = webhook(&receiver.url, Duration::from_secs(5), 5);
    let record = record(&ChannelId::generate(), 1);
    sink.deliver(&record).await.unwrap();
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.key == record.key()));
    assert!(seen.iter().all(|s| s.body == seen[0].body));
    assert!(seen.iter().all(|s| s.signature == seen[0].signature));
    receiver.stop().await;
}

#[actix_web::test]
async fn a_receiver_that_always_fails_makes_the_sink_unavailable_after_max_attempts() {
    let receiver = receiver(|_, _| reply(500)).await;
    let sink = webhook(&receiver.url, Duration::from_secs(5), 4);
    let err = sink
        .deliver(&record(&ChannelId::generate(), 1))
        .await
        .unwrap_err();
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err:?}");
    assert!(!err.is_message_fault());
    assert!(err.to_string().contains("after 4 attempts"), "{err}");
    assert_eq!(receiver.seen().len(), 4);
    receiver.stop().await;
}

#[actix_web::test]
async fn a_422_is_rejected_after_one_attempt() {
    let receiver = receiver(|_, _| reply(422)).await;
    let sink = webhook(&receiver.url, Duration::from_secs(5), 5);
    let err = sink
        .deliver(&record(&ChannelId::generate(), 1))
        .await
        .unwrap_err();
    match &err {
        SinkError::Rejected { status, reason } => {
            assert_eq!(*status, 422);
            assert!(reason.contains("attempt 1"), "{reason}");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(err.is_message_fault());
    assert_eq!(receiver.seen().len(), 1);
    receiver.stop().await;
}

#[actix_web::test]
async fn a_408_and_a_429_are_retried() {
    let receiver = receiver(|_, attempt| match attempt {
        1 => reply(408),
        2 => reply(429),
        _ => reply(201),
    })
    .await;
    let sink = webhook(&receiver.url, Duration::from_secs(5), 3);
    sink.deliver(&record(&ChannelId::generate(), 1))
        .await
        .unwrap();
    assert_eq!(receiver.seen().len(), 3);
    receiver.stop().await;
}

#[actix_web::test]
async fn a_receiver_slower_than_the_timeout_is_retried() {
    let receiver = receiver(|_, attempt| Reply {
        status: 200,
        delay: if attempt == 1 {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        },
        retry_after: None,
    })
    .await;
    let sink = webhook(&receiver.url, Duration::from_millis(300), 3);
    let started = Instant::now();
    sink.deliver(&record(&ChannelId::generate(), 1))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(receiver.seen().len(), 2);

    // Always too slow: unavailable, saying so.
    let slow = self::receiver(|_, _| Reply {
        status: 200,
        delay: Duration::from_secs(3),
        retry_after: None,
    })
    .await;
    let sink = webhook(&slow.url, Duration::from_millis(200), 2);
    let err = sink
        .deliver(&record(&ChannelId::generate(), 2))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no answer within"), "{err}");
    assert_eq!(slow.seen().len(), 2);
    receiver.stop().await;
    slow.stop().await;
}

#[actix_web::test]
async fn retry_after_on_429_and_503_is_a_floor() {
    let receiver = receiver(|_, attempt| match attempt {
        1 => Reply {
            status: 429,
            delay: Duration::ZERO,
            retry_after: Some("1"),
        },
        2 => Reply {
            status: 503,
            delay: Duration::ZERO,
            retry_after: Some("0.6"),
        },
        _ => reply(200),
    })
    .await;
    let sink = webhook(&receiver.url, Duration::from_secs(5), 3);
    sink.deliver(&record(&ChannelId::generate(), 1))
        .await
        .unwrap();
    let seen = receiver.seen();
    assert_eq!(seen.len(), 3);
    let first_gap = seen[1].at - seen[0].at;
    let second_gap = seen[2].at - seen[1].at;
    assert!(first_gap >= Duration::from_secs(1), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(600), "{second_gap:?}");
    // The backoff alone would have waited tens of milliseconds: the floor is what made the gap.
    assert!(first_gap < Duration::from_secs(3), "{first_gap:?}");
    receiver.stop().await;
}

#[actix_web::test]
async fn a_receiver_that_is_not_listening_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = HttpUrl::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
    let sink = webhook(&url, Duration::from_secs(2), 2);
    let err = sink
        .deliver(&record(&ChannelId::generate(), 1))
        .await
        .unwrap_err();
    assert!(matches!(err, SinkError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("could not connect"), "{err}");
    assert!(
        !err.to_string().contains("/hook"),
        "the path may hold a token: {err}"
    );
}

#[actix_web::test]
async fn deliver_many_answers_in_order_with_bounded_concurrency() {
    let channel = ChannelId::generate();
    let records: Vec<SinkRecord> = (0..9).map(|n| record(&channel, n)).collect();
    let refused = records[4].key();
    let receiver = receiver(move |key, _| Reply {
        status: if key == refused { 400 } else { 200 },
        delay: Duration::from_millis(50),
        retry_after: None,
    })
    .await;
    let sink = webhook(&receiver.url, Duration::from_secs(5), 2);
    let results = sink.deliver_many(&records, 3).await;
    assert_eq!(results.len(), 9);
    for (i, result) in results.iter().enumerate() {
        if i == 4 {
            assert!(
                matches!(result, Err(SinkError::Rejected { status: 400, .. })),
                "{result:?}"
            );
        } else {
            assert!(result.is_ok(), "{i}: {result:?}");
        }
    }
    let (seen, peak) = {
        let counters = receiver.counters.lock().unwrap();
        (counters.seen.len(), counters.peak)
    };
    assert_eq!(seen, 9);
    assert!(peak <= 3, "peak {peak}");
    assert!(peak >= 2, "peak {peak}");
    receiver.stop().await;
}
