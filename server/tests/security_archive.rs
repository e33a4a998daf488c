//! Security finding 3, through the real server: hostile source archives are refused (422,
//! naming the entry), archives over the caps too (413, naming the limit), the content of
//! files outside the upload never appears in an answer, and nothing is left behind.

mod common;

use common::TestApp;
use engine::testing::{tar_gz, ArchiveEntry};
use serde_json::Value;

const MANIFEST: &[u8] = b"services:\n  web:\n    command: x\n";

impl TestApp {
    async fn upload_raw(&self, app: &str, body: Vec<u8>) -> (u16, String) {
        let res = self
            .client
            .post(self.url(&format!("/api/v1/apps/{app}/builds")))
            .header("content-type", "application/gzip")
            .body(body)
            .send()
            .await
            .expect("POST");
        let status = res.status().as_u16();
        (status, res.text().await.expect("body"))
    }

    async fn new_app(&self, name: &str) {
        let res = self
            .client
            .post(self.url("/api/v1/apps"))
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .expect("create app");
        assert_eq!(res.status().as_u16(), 201);
    }

    /// Nothing unpacked, uploaded or stored is left in the data dir.
    fn assert_nothing_left(&self, app: &str) {
        let data = self.data_dir.path().join("data");
        for dir in [
            "uploads".to_owned(),
            "artifacts".into(),
            format!("sources/{app}"),
        ] {
            let left: Vec<_> = std::fs::read_dir(data.join(&dir))
                .map(|d| d.map(|e| e.expect("entry").file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "left in {dir}: {left:?}");
        }
    }
}

/// The error's code and message; never anything of /etc/passwd.
fn error_of(status: u16, text: &str) -> (u16, String, String) {
    assert!(!text.contains("root:"), "{text}");
    let body: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test]
async fn hostile_archives_are_refused_by_entry() {
    let app = TestApp::spawn().await;
    app.new_app("victim").await;
    let cases: Vec<(Vec<ArchiveEntry>, &str, &str)> = vec![
        (
            vec![
                ArchiveEntry::file("slipway.yml", MANIFEST),
                ArchiveEntry::symlink("passwd", "/etc/passwd"),
            ],
            "\"passwd\"",
            "absolute path",
        ),
        (
            vec![ArchiveEntry::symlink("slipway.yml", "/etc/passwd")],
            "\"slipway.yml\"",
            "outside the archive",
        ),
        (
            vec![
                ArchiveEntry::file("slipway.yml", MANIFEST),
                ArchiveEntry::file("../escape", b"x"),
            ],
            "\"../escape\"",
            "..",
        ),
        (
            vec![
                ArchiveEntry::file("slipway.yml", MANIFEST),
                ArchiveEntry::file("/tmp/slipway-escape", b"x"),
            ],
            "\"/tmp/slipway-escape\"",
            "absolute path",
        ),
        (
            vec![
                ArchiveEntry::file("slipway.yml", MANIFEST),
                ArchiveEntry::hard_link("shadow", "/etc/passwd"),
            ],
            "\"shadow\"",
            "hard link",
        ),
        (
            vec![
                ArchiveEntry::file("slipway.yml", MANIFEST),
                ArchiveEntry::special(engine_tar_type(b'6'), "pipe"),
            ],
            "\"pipe\"",
            "fifo",
        ),
    ];
    for (entries, name, why) in cases {
        let (status, text) = app.upload_raw("victim", tar_gz(&entries)).await;
        let (status, code, message) = error_of(status, &text);
        assert_eq!((status, code.as_str()), (422, "unprocessable"), "{text}");
        assert!(message.contains(name) && message.contains(why), "{text}");
        app.assert_nothing_left("victim");
    }
    // A manifest that is a link inside the tree is not read either.
    let (status, text) = app
        .upload_raw(
            "victim",
            tar_gz(&[
                ArchiveEntry::file("real.yml", MANIFEST),
                ArchiveEntry::symlink("slipway.yml", "real.yml"),
            ]),
        )
        .await;
    let (status, _, message) = error_of(status, &text);
    assert_eq!(status, 422, "{text}");
    assert!(
        message.contains("slipway.yml must be a regular file"),
        "{text}"
    );
    app.shutdown().await;
}

/// `tar::EntryType` from its header byte, without a dependency on `tar` here.
fn engine_tar_type(byte: u8) -> engine::testing::EntryType {
    engine::testing::EntryType::new(byte)
}

#[tokio::test]
async fn archives_over_the_caps_are_refused_naming_the_limit() {
    let app = TestApp::spawn_with(|c| {
        c.archive.max_unpacked_bytes = 1024 * 1024;
        c.archive.max_archive_entries = 10;
        c.archive.max_archive_bytes = 64 * 1024;
    })
    .await;
    app.new_app("victim").await;

    // 4 MiB of zeros in a few KiB of gzip.
    let zeros = vec![0u8; 4 * 1024 * 1024];
    let bomb = tar_gz(&[
        ArchiveEntry::file("slipway.yml", MANIFEST),
        ArchiveEntry::file("big", &zeros),
    ]);
    assert!(bomb.len() < 64 * 1024);
    let (status, text) = app.upload_raw("victim", bomb).await;
    let (status, code, message) = error_of(status, &text);
    assert_eq!((status, code.as_str()), (413, "too_large"), "{text}");
    assert!(message.contains("--max-unpacked-bytes"), "{text}");
    app.assert_nothing_left("victim");

    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    let mut entries = vec![ArchiveEntry::file("slipway.yml", MANIFEST)];
    entries.extend(names.iter().map(|n| ArchiveEntry::file(n, b"x")));
    let (status, text) = app.upload_raw("victim", tar_gz(&entries)).await;
    let (status, code, message) = error_of(status, &text);
    assert_eq!((status, code.as_str()), (413, "too_large"), "{text}");
    assert!(message.contains("--max-archive-entries"), "{text}");
    app.assert_nothing_left("victim");

    // Over the compressed size: refused from its Content-Length, and when streamed without one.
    let (status, text) = app.upload_raw("victim", vec![7u8; 64 * 1024 + 1]).await;
    let (status, code, message) = error_of(status, &text);
    assert_eq!((status, code.as_str()), (413, "too_large"), "{text}");
    assert!(message.contains("--max-archive-bytes"), "{text}");
    let (status, text) = app
        .post_chunked("/api/v1/apps/victim/builds", 20, 8 * 1024)
        .await;
    let (status, code, message) = error_of(status, &text);
    assert_eq!((status, code.as_str()), (413, "too_large"), "{text}");
    assert!(message.contains("--max-archive-bytes"), "{text}");
    app.assert_nothing_left("victim");

    // Within the caps: built, into the app's own directory.
    let (status, text) = app
        .upload_raw(
            "victim",
            tar_gz(&[ArchiveEntry::file("slipway.yml", MANIFEST)]),
        )
        .await;
    assert_eq!(status, 201, "{text}");
    let sources = app.data_dir.path().join("data/sources/victim");
    assert_eq!(std::fs::read_dir(sources).expect("sources").count(), 2);
    app.shutdown().await;
}

impl TestApp {
    /// POSTs `chunks` chunks of `size` bytes with `Transfer-Encoding: chunked` (no
    /// Content-Length), over a plain connection; returns the status and body.
    async fn post_chunked(&self, path: &str, chunks: usize, size: usize) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/gzip\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n",
            self.addr, self.token
        );
        conn.write_all(head.as_bytes()).await.expect("write");
        let chunk = [
            format!("{size:x}\r\n").into_bytes(),
            vec![7u8; size],
            b"\r\n".to_vec(),
        ]
        .concat();
        for _ in 0..chunks {
            // The server may answer (and stop reading) before the body ends.
            if conn.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = conn.write_all(b"0\r\n\r\n").await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(common::WAIT, conn.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "no answer within {:?}", common::WAIT);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not HTTP: {answer}"));
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        // The body may itself be chunked: keep the JSON object.
        let json = match (body.find('{'), body.rfind('}')) {
            (Some(a), Some(b)) => body[a..=b].to_owned(),
            _ => body.to_owned(),
        };
        (status, json)
    }
}
