//! Health checks: one HTTP GET with a timeout, and the wait for a new process to become
//! healthy within its grace while watching that it does not exit.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a process did not become healthy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unhealthy {
    Exited(String),
    NotHealthyInTime { grace: Duration, last_error: String },
}

/// First poll interval while waiting for a process to come up; it doubles up to the cap.
const FIRST_POLL: Duration = Duration::from_millis(5);
const MAX_POLL: Duration = Duration::from_millis(50);
/// How much of a health check's answer is read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long a process without a port must stay up to count as started.
pub const WORKER_MIN_READY: Duration = Duration::from_secs(1);

/// `GET path` on `addr`; healthy on a 2xx or 3xx answer within `timeout`.
pub async fn check_http(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: slipway-health\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("send: {e}"))?;
        // Read the head and a Content-Length body (bounded) before closing: closing early would
        // cut the app off mid-write, which many servers log as an error.
        let mut answer = Vec::with_capacity(512);
        let mut chunk = [0u8; 4096];
        loop {
            let read = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..read]);
            if answer.len() >= MAX_ANSWER_BYTES || complete(&answer) {
                break;
            }
        }
        let head = &answer[..answer.len().min(64)];
        let n = head.len();
        let line = String::from_utf8_lossy(&head[..n]);
        let status: u16 = line
            .strip_prefix("HTTP/1.")
            .and_then(|rest| rest.get(2..5))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| "not an HTTP answer".to_string())?;
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("{path} answered {status}"))
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{path} did not answer within {} ms",
            timeout.as_millis()
        )),
    }
}

/// Whether `answer` holds a whole HTTP response head and its Content-Length body (or a head
/// without one).
fn complete(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(len) => answer.len() >= end + 4 + len,
        None => true,
    }
}

/// Polls `probe` (quickly at first, so a fast process is seen as soon as it is up) until it
/// succeeds, `exited` resolves, or `grace` passes. Returns how long it took.
pub async fn wait_until_healthy<P, F, E>(
    grace: Duration,
    mut probe: P,
    exited: E,
) -> Result<Duration, Unhealthy>
where
    P: FnMut() -> F,
    F: Future<Output = Result<(), String>>,
    E: Future<Output = String>,
{
    let start = tokio::time::Instant::now();
    let deadline = start + grace;
    tokio::pin!(exited);
    let mut poll = FIRST_POLL;
    let mut last_error = String::from("no answer yet");
    loop {
        tokio::select! {
            biased;
            status = &mut exited => return Err(Unhealthy::Exited(status)),
            result = probe() => match result {
                Ok(()) => return Ok(start.elapsed()),
                Err(e) => last_error = e,
            },
            _ = tokio::time::sleep_until(deadline) => {
                return Err(Unhealthy::NotHealthyInTime { grace, last_error })
            }
        }
        tokio::select! {
            biased;
            status = &mut exited => return Err(Unhealthy::Exited(status)),
            _ = tokio::time::sleep_until(deadline) => {
                return Err(Unhealthy::NotHealthyInTime { grace, last_error })
            }
            _ = tokio::time::sleep(poll) => {}
        }
        poll = (poll * 2).min(MAX_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn healthy_after_some_failures() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let took = wait_until_healthy(
            Duration::from_secs(10),
            move || {
                let n = c.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 5 {
                        Err("refused".to_string())
                    } else {
                        Ok(())
                    }
                }
            },
            std::future::pending(),
        )
        .await
        .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 6);
        // 5 + 10 + 20 + 40 + 50 ms of polling: fast first checks, then capped.
        assert_eq!(took, Duration::from_millis(125));
    }

    #[tokio::test(start_paused = true)]
    async fn grace_passes() {
        let err = wait_until_healthy(
            Duration::from_secs(3),
            || async { Err("/health answered 500".to_string()) },
            std::future::pending(),
        )
        .await
        .unwrap_err();
        assert_eq!(
            err,
            Unhealthy::NotHealthyInTime {
                grace: Duration::from_secs(3),
                last_error: "/health answered 500".into()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn exit_wins() {
        let err = wait_until_healthy(
            Duration::from_secs(3),
            || async { Err("refused".to_string()) },
            async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "exit status 1".to_string()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err, Unhealthy::Exited("exit status 1".into()));
    }

    #[test]
    fn complete_answers() {
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"));
        assert!(!complete(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok"));
        assert!(complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
        ));
        assert!(complete(b"HTTP/1.1 500 Oops\r\n\r\n"));
    }

    #[tokio::test]
    async fn http_statuses() {
        use tokio::net::TcpListener;
        async fn serve_once(answer: &'static str) -> SocketAddr {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
            });
            addr
        }
        let t = Duration::from_secs(5);
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        assert_eq!(check_http(ok, "/health", t).await, Ok(()));
        let bad = serve_once("HTTP/1.1 500 Internal Server Error\r\n\r\n").await;
        assert_eq!(
            check_http(bad, "/health", t).await,
            Err("/health answered 500".into())
        );
        let junk = serve_once("hello").await;
        assert!(check_http(junk, "/", t).await.is_err());
    }
}
