//! The bridge inside the sandbox: `cloudrunr egress-bridge`.
//!
//! A build runs in its own network namespace, where only its own loopback exists. The bridge
//! listens on that loopback (the address the build's `HTTPS_PROXY` names), forwards every
//! connection to the proxy's Unix socket bound into the sandbox, runs the build's command as its
//! child, and exits with the command's status. It decides nothing: the proxy outside does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UnixStream};

/// Runs `command` with the bridge serving `listen`; returns the command's exit status (128 +
/// the signal's number when a signal ended it).
pub async fn run(listen: SocketAddr, socket: PathBuf, command: &[String]) -> ExitCode {
    let Some((program, args)) = command.split_first() else {
        eprintln!("egress-bridge: no command to run");
        return ExitCode::from(2);
    };
    // Listening before the command starts: its first request finds the bridge ready.
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("egress-bridge: cannot listen on {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut child = match tokio::process::Command::new(program).args(args).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("egress-bridge: cannot run {program}: {e}");
            return ExitCode::from(127);
        }
    };
    let forwarding = tokio::spawn(forward(listener, socket));
    let code = match child.wait().await {
        Ok(status) => exit_code(status),
        Err(e) => {
            eprintln!("egress-bridge: {e}");
            ExitCode::from(2)
        }
    };
    forwarding.abort();
    code
}

fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(signal)) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(255)),
        (None, None) => ExitCode::from(1),
    }
}

async fn forward(listener: TcpListener, socket: PathBuf) {
    loop {
        let mut conn = match listener.accept().await {
            // No Nagle delay on the way back to the client (see the proxy's upstream side).
            Ok((conn, _)) => {
                let _ = conn.set_nodelay(true);
                conn
            }
            Err(_) => {
                // Out of descriptors, most likely: let some tunnels end first.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let socket = socket.clone();
        tokio::spawn(async move {
            match UnixStream::connect(&socket).await {
                Ok(mut upstream) => {
                    let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
                }
                Err(e) => {
                    let body = format!("the build's network proxy is not reachable: {e}\n");
                    let answer = format!(
                        "HTTP/1.1 502 Bad Gateway\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                }
            }
        });
    }
}
