//! `POST /webhooks/github` against unauthenticated senders: a body is judged by its headers before
//! it is read, verified as it streams in and refused at GitHub's 25 MB, only a few are read at
//! once before their signature is known good, a stalled one is cut off, and a genuine body
//! replayed under a new delivery id is recorded but not acted on.

use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use test_support::Platform;
use test_support::github::MockGitHub;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A platform configured (by environment) as the stand-in's GitHub App, with `extra` settings.
async fn platform(gh: &MockGitHub, extra: &[(&str, &str)]) -> Platform {
    let app = gh.app();
    let (id, url) = (app.id.to_string(), gh.url());
    let mut env = vec![
        ("CLOUDRUNR_GITHUB_API_URL", url.as_str()),
        ("CLOUDRUNR_GITHUB_URL", &url),
        ("CLOUDRUNR_GITHUB_APP_ID", &id),
        ("CLOUDRUNR_GITHUB_PRIVATE_KEY", &app.private_key_pem),
        ("CLOUDRUNR_GITHUB_WEBHOOK_SECRET", &app.webhook_secret),
        ("CLOUDRUNR_GITHUB_CLIENT_ID", &app.client_id),
        ("CLOUDRUNR_GITHUB_CLIENT_SECRET", &app.client_secret),
    ];
    env.extend_from_slice(extra);
    Platform::start_with(&env).await
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../webhook/tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A signature of the right form that is not the body's.
const FORGED: &str = "sha256=0000000000000000000000000000000000000000000000000000000000000000";

/// A delivery's request head; `length` is the Content-Length (`None`: chunked).
fn head(p: &Platform, delivery: &str, signature: Option<&str>, length: Option<usize>) -> String {
    let mut head = format!(
        "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: ping\r\nX-GitHub-Delivery: {delivery}\r\n",
        p.port
    );
    if let Some(s) = signature {
        head.push_str(&format!("X-Hub-Signature-256: {s}\r\n"));
    }
    match length {
        Some(n) => head.push_str(&format!("Content-Length: {n}\r\n\r\n")),
        None => head.push_str("Transfer-Encoding: chunked\r\n\r\n"),
    }
    head
}

/// Reads a response off `stream`: status, head (lowercased) and body.
async fn answer(stream: &mut TcpStream, within: Duration) -> (u16, String, Value) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + within;
    loop {
        let n = match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Err(_) => panic!("no answer within {within:?}: {}", String::from_utf8_lossy(&buf)),
            Ok(Ok(n)) => n,
            Ok(Err(e)) => panic!("read: {e}; so far {}", String::from_utf8_lossy(&buf)),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                let body = serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap_or(Value::Null);
                return (head[9..12].parse().unwrap(), head, body);
            }
        }
        assert!(n > 0, "closed before a whole answer: {}", String::from_utf8_lossy(&buf));
    }
}

async fn connect(p: &Platform) -> TcpStream {
    TcpStream::connect(("127.0.0.1", p.port)).await.expect("connect")
}

#[tokio::test]
async fn unsigned_and_oversized_bodies_are_refused_without_being_read() {
    let gh = MockGitHub::start().await;
    let p = platform(&gh, &[]).await;

    // No signature: refused on the headers, with 20 MB announced and none of it sent.
    let mut c = connect(&p).await;
    c.write_all(head(&p, "unsigned", None, Some(20 << 20)).as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    let (status, _, body) = answer(&mut c, Duration::from_secs(2)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_signature"))
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    // More than GitHub's 25 MB announced: 413 before a byte of it.
    let mut c = connect(&p).await;
    let over = 25 * 1024 * 1024 + 1;
    c.write_all(head(&p, "declared-huge", Some(FORGED), Some(over)).as_bytes())
        .await
        .unwrap();
    let (status, _, body) = answer(&mut c, Duration::from_secs(2)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );

    // A body sent whole with a signature that is not its own: read, then refused.
    let mut c = connect(&p).await;
    let body = vec![b' '; 2 << 20];
    c.write_all(head(&p, "forged", Some(FORGED), Some(body.len())).as_bytes())
        .await
        .unwrap();
    c.write_all(&body).await.unwrap();
    let (status, _, answer_body) = answer(&mut c, Duration::from_secs(10)).await;
    assert_eq!(
        (status, answer_body["error"]["code"].as_str()),
        (401, Some("invalid_signature"))
    );

    // A chunked body announces nothing: it is refused at the chunk that crosses 25 MB.
    let mut c = connect(&p).await;
    c.write_all(head(&p, "streamed-huge", Some(FORGED), None).as_bytes())
        .await
        .unwrap();
    let (mut read, mut write) = c.into_split();
    let sender = tokio::spawn(async move {
        let chunk = vec![b' '; 1 << 20];
        let framed = [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk, b"\r\n".to_vec()].concat();
        let mut sent = 0usize;
        // Up to four times the cap; the server stops taking it at the cap (and after its
        // answer reads on only briefly, so that the client sees the answer).
        for _ in 0..100 {
            if write.write_all(&framed).await.is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let mut buf = Vec::new();
    let read_all = tokio::time::timeout(Duration::from_secs(20), read.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(read_all.is_ok(), "the connection is closed after the answer");
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("payload_too_large"), "{text}");
    let sent = sender.await.unwrap();
    assert!(sent < 100, "the server stopped reading ({sent} MiB taken)");

    // A genuine body too long to hold in memory unverified (kept on disk while it is read).
    let mut long = fixture("ping.json");
    long.pop_if(|b| *b == b'\n');
    long.extend(std::iter::repeat_n(b' ', 3 << 20));
    let signature = webhook::signature::sign(gh.app().webhook_secret.as_bytes(), &long);
    let mut c = connect(&p).await;
    c.write_all(head(&p, "long-ping", Some(&signature), Some(long.len())).as_bytes())
        .await
        .unwrap();
    c.write_all(&long).await.unwrap();
    let (status, _, answer_body) = answer(&mut c, Duration::from_secs(10)).await;
    assert_eq!(
        (status, answer_body["outcome"].as_str()),
        (202, Some("pong")),
        "{answer_body}"
    );
}

#[tokio::test]
async fn only_a_few_unverified_bodies_are_read_at_once_and_stalled_ones_are_cut() {
    let gh = MockGitHub::start().await;
    let p = platform(&gh, &[("CLOUDRUNR_BODY_TIMEOUT_SECS", "6")]).await;
    // Eight bodies that stall after their first bytes hold every place.
    let mut stalled = Vec::new();
    for n in 0..8 {
        let mut c = connect(&p).await;
        c.write_all(head(&p, &format!("stalled-{n}"), Some(FORGED), Some(1000)).as_bytes())
            .await
            .unwrap();
        c.write_all(b"{\"zen\":").await.unwrap();
        stalled.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();

    // A ninth waits a moment for a place, then is told to come back.
    let body = fixture("ping.json");
    let signature = webhook::signature::sign(gh.app().webhook_secret.as_bytes(), &body);
    let mut c = connect(&p).await;
    c.write_all(head(&p, "ninth", Some(&signature), Some(body.len())).as_bytes())
        .await
        .unwrap();
    c.write_all(&body).await.unwrap();
    let (status, head_text, answer_body) = answer(&mut c, Duration::from_secs(10)).await;
    assert_eq!(
        (status, answer_body["error"]["code"].as_str()),
        (503, Some("busy")),
        "{head_text}"
    );
    assert!(head_text.contains("retry-after: "), "{head_text}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

    // The stalled bodies are cut off at the body timeout, their places freed.
    for c in &mut stalled {
        let (status, _, answer_body) = answer(c, Duration::from_secs(10)).await;
        assert_eq!(
            (status, answer_body["error"]["code"].as_str()),
            (408, Some("body_timeout"))
        );
    }
    let mut c = connect(&p).await;
    c.write_all(head(&p, "after", Some(&signature), Some(body.len())).as_bytes())
        .await
        .unwrap();
    c.write_all(&body).await.unwrap();
    let (status, _, answer_body) = answer(&mut c, Duration::from_secs(10)).await;
    assert_eq!(
        (status, answer_body["outcome"].as_str()),
        (202, Some("pong")),
        "{answer_body}"
    );
}

#[tokio::test]
async fn a_replayed_body_under_a_new_delivery_id_is_not_acted_on() {
    let gh = MockGitHub::start().await;
    let p = platform(&gh, &[]).await;
    let admin = p.signup("Admin").await;
    let body = fixture("installation.created.json");
    let signature = webhook::signature::sign(gh.app().webhook_secret.as_bytes(), &body);
    let deliver = |delivery: &'static str| {
        p.http
            .post(format!("{}/webhooks/github", p.base))
            .header("content-type", "application/json")
            .header("x-github-event", "installation")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", &signature)
            .body(body.clone())
            .send()
    };
    let first = deliver("first").await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["outcome"], "updated", "the first delivery is acted on: {first}");

    // The same bytes, signed by GitHub, captured and sent again under a fresh delivery id.
    let replay = deliver("replayed").await.unwrap();
    assert_eq!(replay.status(), StatusCode::OK);
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["outcome"], "replay", "{replay}");
    assert!(replay["detail"].as_str().unwrap().contains("first"), "{replay}");

    // GitHub's own redelivery keeps its id, and is the duplicate it always was.
    let again: Value = deliver("first").await.unwrap().json().await.unwrap();
    assert_eq!(again["outcome"], "duplicate", "{again}");

    let (status, list) = p.get("/api/admin/webhook-deliveries", &admin).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let outcomes: Vec<(&str, &str)> = list["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_str().unwrap(), d["outcome"].as_str().unwrap()))
        .collect();
    assert!(outcomes.contains(&("first", "updated")), "{outcomes:?}");
    assert!(outcomes.contains(&("replayed", "replay")), "{outcomes:?}");
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
}
