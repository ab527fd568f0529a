//! Connections that would hold a descriptor for ever are let go: idle keep-alives, heads sent a
//! byte at a time, an HTTP/2 preface and then silence, request bodies that never come. At the
//! connection cap the oldest idle connection makes room for a new one. Each on the site fast
//! path (`Host: <label>.localhost`, answered by `router::wire`) and on the general path (the API
//! host, through hyper), with small limits set through the environment.

use std::time::Duration;
use test_support::Platform;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A site that does not exist still has its (404) answers from the fast path.
const SITE_HOST: &str = "nosite.localhost";

/// A platform with the given limits.
async fn platform(env: &[(&str, &str)]) -> Platform {
    Platform::start_with(env).await
}

async fn connect(p: &Platform) -> TcpStream {
    TcpStream::connect(("127.0.0.1", p.port)).await.expect("connect")
}

/// Reads one response head and its `Content-Length` body off `stream`; returns the status.
async fn response(stream: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed before an answer: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < end + 4 + length {
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed within a body");
            buf.extend_from_slice(&chunk[..n]);
        }
        return head[9..12].parse().expect("a status");
    }
}

/// Waits until the server closes `stream` (whatever it sends first); returns how long that took.
/// Fails when it is still open after `at_most`.
async fn closed_within(stream: &mut TcpStream, at_most: Duration) -> Duration {
    let started = Instant::now();
    let mut chunk = [0u8; 8192];
    loop {
        match tokio::time::timeout_at(started + at_most, stream.read(&mut chunk)).await {
            Err(_) => panic!("the connection is still open after {at_most:?}"),
            Ok(Ok(0) | Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

fn get(target: &str, host: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let p = platform(&[
        ("CLOUDRUNR_IDLE_TIMEOUT_SECS", "2"),
        ("CLOUDRUNR_HEADER_TIMEOUT_SECS", "30"),
    ])
    .await;
    let api_host = format!("127.0.0.1:{}", p.port);
    for host in [SITE_HOST, api_host.as_str()] {
        let mut c = connect(&p).await;
        c.write_all(get("/api/openapi.json", host).as_bytes()).await.unwrap();
        let status = response(&mut c).await;
        assert!(status == 200 || status == 404, "{host}: {status}");
        // Kept alive: a second request is answered on it...
        c.write_all(get("/", host).as_bytes()).await.unwrap();
        response(&mut c).await;
        // ...then, left idle, it is closed after the idle timeout, not before.
        let took = closed_within(&mut c, Duration::from_secs(6)).await;
        assert!(
            took >= Duration::from_millis(1500),
            "{host}: closed after only {took:?}"
        );
    }
    // A connection that never sends anything is idle from the start.
    let mut silent = connect(&p).await;
    closed_within(&mut silent, Duration::from_secs(6)).await;
}

#[tokio::test]
async fn a_head_sent_a_byte_at_a_time_is_cut_off_at_the_header_timeout() {
    let p = platform(&[
        ("CLOUDRUNR_HEADER_TIMEOUT_SECS", "2"),
        ("CLOUDRUNR_IDLE_TIMEOUT_SECS", "30"),
    ])
    .await;
    let api_host = format!("127.0.0.1:{}", p.port);
    for (host, first) in [(SITE_HOST, false), (api_host.as_str(), true)] {
        let mut c = connect(&p).await;
        if first {
            // One whole request first: the API's is handed to hyper, which reads the next head.
            c.write_all(get("/api/openapi.json", host).as_bytes()).await.unwrap();
            assert_eq!(response(&mut c).await, 200);
        }
        // A byte every 100 ms: steady, but the head would take far longer than the timeout.
        let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Slow: {}\r\n\r\n", "a".repeat(200));
        let started = Instant::now();
        let mut cut = false;
        for byte in head.as_bytes() {
            if c.write_all(std::slice::from_ref(byte)).await.is_err() {
                cut = true;
                break;
            }
            let mut probe = [0u8; 1024];
            let read = tokio::time::timeout(Duration::from_millis(100), c.read(&mut probe)).await;
            if let Ok(Ok(0) | Err(_)) = read {
                cut = true;
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "{host}: still reading the head"
            );
        }
        assert!(cut, "{host}: the whole slow head was read");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
            "{host}: cut after {took:?}"
        );
    }
}

#[tokio::test]
async fn an_http2_preface_and_then_silence_is_closed() {
    let p = platform(&[
        ("CLOUDRUNR_IDLE_TIMEOUT_SECS", "2"),
        ("CLOUDRUNR_H2_KEEPALIVE_SECS", "60"),
    ])
    .await;
    let mut c = connect(&p).await;
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    let took = closed_within(&mut c, Duration::from_secs(8)).await;
    assert!(took >= Duration::from_millis(1500), "closed after only {took:?}");

    // Unanswered pings end a peer that keeps its streams open but stops answering.
    let p = platform(&[
        ("CLOUDRUNR_IDLE_TIMEOUT_SECS", "60"),
        ("CLOUDRUNR_H2_KEEPALIVE_SECS", "1"),
    ])
    .await;
    let mut c = connect(&p).await;
    // The preface and an empty SETTINGS frame: a real HTTP/2 connection, then silence.
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    closed_within(&mut c, Duration::from_secs(8)).await;
}

#[tokio::test]
async fn a_request_whose_body_never_comes_is_cut_off() {
    let p = platform(&[
        ("CLOUDRUNR_BODY_TIMEOUT_SECS", "2"),
        ("CLOUDRUNR_IDLE_TIMEOUT_SECS", "30"),
    ])
    .await;
    let api_host = format!("127.0.0.1:{}", p.port);
    // The API reads the body (a JSON sign-up): it waits for the body timeout, then answers.
    let mut c = connect(&p).await;
    let head = format!(
        "POST /api/auth/signup HTTP/1.1\r\nHost: {api_host}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"name\":"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let status = response(&mut c).await;
    let took = started.elapsed();
    assert!((400..500).contains(&status), "{status}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "answered after {took:?}"
    );
    closed_within(&mut c, Duration::from_secs(2)).await;

    // A site does not read request bodies: it answers at once and closes, the body unread.
    let mut c = connect(&p).await;
    let head = format!("POST / HTTP/1.1\r\nHost: {SITE_HOST}\r\nContent-Length: 1000\r\n\r\nabc");
    c.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    response(&mut c).await;
    closed_within(&mut c, Duration::from_secs(4)).await;
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test]
async fn at_the_connection_cap_the_oldest_idle_connection_makes_room() {
    let p = platform(&[
        ("CLOUDRUNR_MAX_CONNECTIONS", "4"),
        ("CLOUDRUNR_IDLE_TIMEOUT_SECS", "60"),
    ])
    .await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect(&p).await);
        // Accepted in this order, idle since then.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let api_host = format!("127.0.0.1:{}", p.port);
    // Each new connection past the cap is served; the oldest idle one goes.
    for (n, host) in [SITE_HOST, api_host.as_str()].into_iter().enumerate() {
        let mut c = connect(&p).await;
        c.write_all(format!("GET /api/openapi.json HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let status = response(&mut c).await;
        assert!(status == 200 || status == 404, "{host}: {status}");
        closed_within(&mut idle[n], Duration::from_secs(2)).await;
        closed_within(&mut c, Duration::from_secs(2)).await;
        // Back to the cap, with the next oldest idle.
        idle.push(connect(&p).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The younger idle connections are still open and still served.
    let mut young = idle.pop().unwrap();
    young.write_all(get("/", SITE_HOST).as_bytes()).await.unwrap();
    assert_eq!(response(&mut young).await, 404);
    // With as many busy as the cap (requests in flight: bodies still coming), a newcomer is turned
    // away rather than an answer being cut.
    let mut busy = Vec::new();
    for _ in 0..4 {
        let mut c = connect(&p).await;
        let head = format!(
            "POST /api/auth/signup HTTP/1.1\r\nHost: {api_host}\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n{{"
        );
        c.write_all(head.as_bytes()).await.unwrap();
        busy.push(c);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut late = connect(&p).await;
    closed_within(&mut late, Duration::from_secs(2)).await;
    for c in &mut busy {
        let mut probe = [0u8; 1];
        let open = tokio::time::timeout(Duration::from_millis(50), c.read(&mut probe))
            .await
            .is_err();
        assert!(open, "a connection with a request in flight was cut");
    }
}
