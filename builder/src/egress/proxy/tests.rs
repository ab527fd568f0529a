//! The proxy over its real Unix socket, with upstream servers on loopback only.

use super::*;
use tokio::net::TcpListener;

fn allow(list: &str) -> EgressPolicy {
    EgressPolicy::parse(list).unwrap()
}

fn quick() -> ProxyLimits {
    ProxyLimits {
        head_timeout: Duration::from_millis(300),
        ..ProxyLimits::default()
    }
}

/// Sends `request` through a new connection and returns everything the proxy answers until it
/// closes or goes quiet.
async fn exchange(proxy: &EgressProxy, request: &[u8]) -> String {
    let mut conn = UnixStream::connect(proxy.socket()).await.unwrap();
    conn.write_all(request).await.unwrap();
    read_answer(&mut conn).await
}

async fn read_answer(conn: &mut UnixStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.starts_with(b"HTTP/1.1 200") {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An upstream on loopback that counts connections and echoes what it gets.
async fn echo_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (port, count)
}

fn connect_req(target: &str) -> Vec<u8> {
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nUser-Agent: test\r\n\r\n").into_bytes()
}

#[tokio::test]
async fn loopback_is_refused_without_a_packet_to_it() {
    let (port, count) = echo_server().await;
    let proxy = EgressProxy::start(EgressPolicy::default(), quick()).unwrap();
    for target in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
    ] {
        let answer = exchange(&proxy, &connect_req(&target)).await;
        assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{target}: {answer}");
        assert!(answer.contains("is a loopback address"), "{answer}");
        let notice = proxy.next_notice().await.unwrap();
        assert!(
            notice.starts_with("Network: CloudRunr refused a connection to") && notice.contains("loopback"),
            "{notice}"
        );
    }
    assert_eq!(count.load(Ordering::SeqCst), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn an_allowed_port_gets_a_tunnel_carrying_early_bytes() {
    let (port, count) = echo_server().await;
    let proxy = EgressProxy::start(allow(&format!("127.0.0.1:{port}")), quick()).unwrap();
    let mut conn = UnixStream::connect(proxy.socket()).await.unwrap();
    // The first bytes of the tunnel come in the same write as the head.
    let mut req = connect_req(&format!("127.0.0.1:{port}"));
    req.extend_from_slice(b"early ");
    conn.write_all(&req).await.unwrap();
    let answer = read_answer(&mut conn).await;
    assert_eq!(answer, "HTTP/1.1 200 Connection established\r\n\r\n");
    conn.write_all(b"late").await.unwrap();
    let mut echoed = vec![0u8; 10];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, b"early late");
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // The next port of the same address is not listed.
    let answer = exchange(&proxy, &connect_req(&format!("127.0.0.1:{}", port.wrapping_add(1)))).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
}

#[tokio::test]
async fn only_bounded_connect_heads_are_served() {
    let proxy = EgressProxy::start(allow("127.0.0.1"), quick()).unwrap();
    let cases: &[(&[u8], &str)] = &[
        (b"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\n\r\n", "405"),
        (b"CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT 127.0.0.1:0 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT user@127.0.0.1:80 HTTP/1.1\r\n\r\n", "400"),
        (b"CONNECT [::1:80 HTTP/1.1\r\n\r\n", "400"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "400"),
        (b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x", "408"),
    ];
    for (req, status) in cases {
        let answer = exchange(&proxy, req).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{:?}: {answer}",
            String::from_utf8_lossy(req)
        );
    }
    let mut huge = b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 300).flatten());
    let answer = exchange(&proxy, &huge).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    let mut many = b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n".to_vec();
    many.extend(std::iter::repeat_n(b"A: b\r\n", 100).flatten());
    many.extend_from_slice(b"\r\n");
    let answer = exchange(&proxy, &many).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
}

#[tokio::test]
async fn tunnels_beyond_the_cap_wait_for_a_free_one() {
    let (port, _) = echo_server().await;
    let limits = ProxyLimits {
        max_tunnels: 2,
        ..quick()
    };
    let proxy = EgressProxy::start(allow("127.0.0.1"), limits).unwrap();
    let target = format!("127.0.0.1:{port}");
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut conn = UnixStream::connect(proxy.socket()).await.unwrap();
        conn.write_all(&connect_req(&target)).await.unwrap();
        assert!(read_answer(&mut conn).await.starts_with("HTTP/1.1 200"));
        open.push(conn);
    }
    let mut third = UnixStream::connect(proxy.socket()).await.unwrap();
    third.write_all(&connect_req(&target)).await.unwrap();
    let mut buf = [0u8; 64];
    let waited = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(waited.is_err(), "the third tunnel is not served while two are open");
    drop(open.pop());
    let answer = read_answer(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn refusals_reported_to_the_log_are_bounded() {
    let proxy = EgressProxy::start(EgressPolicy::default(), quick()).unwrap();
    for _ in 0..MAX_NOTICES + 5 {
        let answer = exchange(&proxy, &connect_req("10.0.0.1:443")).await;
        assert!(answer.contains("10.0.0.1 is a private network address"), "{answer}");
    }
    let notices = proxy.pending_notices();
    assert_eq!(notices.len(), MAX_NOTICES + 1);
    assert!(notices.last().unwrap().contains("not reported"));
}

#[tokio::test]
async fn a_dropped_proxy_is_gone() {
    let proxy = EgressProxy::start(EgressPolicy::default(), quick()).unwrap();
    let socket = proxy.socket();
    assert!(UnixStream::connect(&socket).await.is_ok());
    drop(proxy);
    assert!(UnixStream::connect(&socket).await.is_err());
}

#[test]
fn authorities() {
    assert_eq!(split_authority("Example.COM:443"), Some(("example.com".into(), 443)));
    assert_eq!(split_authority("[::1]:8080"), Some(("::1".into(), 8080)));
    for bad in [
        "example.com",
        "example.com:",
        "example.com:0",
        "example.com:99999",
        ":443",
        "[::1]",
        "[nope]:443",
        "a/b:443",
        "a b:443",
        "user@host:443",
    ] {
        assert_eq!(split_authority(bad), None, "{bad}");
    }
}
