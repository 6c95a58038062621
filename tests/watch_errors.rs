//! Errors that name their cause, as an operator reads them: a cloud endpoint that refuses the
//! connection, or answers a web page, with the real binary.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A config whose `[indigo] endpoint` is `endpoint`.
fn config_for(w: &World, endpoint: &str) -> std::path::PathBuf {
    let path = w.config();
    let text = std::fs::read_to_string(&path).expect("config");
    let text = text.replace(&w.sim.url(), endpoint);
    std::fs::write(&path, text).expect("config");
    path
}

fn output(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test]
async fn a_refused_connection_is_said_in_words() {
    let w = World::new().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let cfg = config_for(&w, &format!("http://127.0.0.1:{port}"));
    let out = run(&cfg, &["--once"]).await;
    let said = output(&out);
    assert_ne!(code(&out), 0, "{said}");
    assert!(
        said.contains(&format!(
            "authenticate: cannot connect to 127.0.0.1:{port}: connection refused"
        )),
        "{said}"
    );
    assert!(!said.contains("error sending request"), "{said}");
}

#[tokio::test]
async fn an_endpoint_that_answers_a_web_page_is_said_in_words() {
    let w = World::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // A web server's "not found" page for every request.
    let server = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await;
                let body = "<!DOCTYPE html>\n<html><body><h1>Not Found</h1></body></html>\n";
                let reply = format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    let cfg = config_for(&w, &format!("http://{addr}"));
    let out = run(&cfg, &["--once"]).await;
    let said = output(&out);
    assert_ne!(code(&out), 0, "{said}");
    assert!(
        said.contains(
            "authenticate: the endpoint answered an HTML page (HTTP 404): is the URL right?"
        ),
        "{said}"
    );
    assert!(!said.contains("API error"), "{said}");
    server.abort();
}
