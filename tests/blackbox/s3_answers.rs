//! S3 endpoints that answer badly, made on 127.0.0.1 by the test: a body
//! that ends before its `Content-Length`, and a `Range` request answered
//! with the whole object (`200`, not `206`), as some servers and proxies
//! do. A read is run again from its start, a bounded number of times: it
//! never goes on for ever, and never glues a whole object onto the part
//! of it already read (which made a sound object read as corrupt).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use obnam_test_support::{run_with_deadline, TestEnv};

/// The requests a fake endpoint received (their head, lower-cased).
type Seen = Arc<Mutex<Vec<String>>>;

/// A fake S3 endpoint: each connection gets one request read and
/// `answer(n, head)` written (n counts requests from 0), then closed.
fn fake_s3(answer: impl Fn(usize, &str) -> Vec<u8> + Send + 'static) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match conn.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&head).to_lowercase();
            let n = {
                let mut seen = s.lock().unwrap();
                seen.push(head.clone());
                seen.len() - 1
            };
            let _ = conn.write_all(&answer(n, &head));
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
    });
    (port, seen)
}

fn response(status: &str, content_length: usize, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {content_length}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// obnam on `s3://bucket/repo` at the fake endpoint on `port`.
fn obnam_at(env: &TestEnv, port: u16, args: &[&str]) -> std::process::Command {
    let mut cmd = env.obnam();
    cmd.args(["--repository", "s3://bucket/repo"])
        .args(["--s3-endpoint", &format!("http://127.0.0.1:{port}")])
        .args(["--s3-region", "us-east-1", "--storage-timeout", "2"])
        .args(["--client-name", "c"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    cmd
}

/// Every answer ends a byte short of what it says: each try of a read
/// that resumes where it broke off makes progress, and so went on for
/// ever (ten minutes and counting, `--storage-timeout` no help). Now the
/// read fails after a few tries, naming the object.
#[test]
fn a_read_whose_every_answer_ends_early_gives_up() {
    let env = TestEnv::new();
    let (port, seen) = fake_s3(|_, _| response("200 OK", 20, b"0123456789abcdefghi"));
    let run = run_with_deadline(
        &mut obnam_at(&env, port, &["genids"]),
        Duration::from_secs(300),
    )
    .fails()
    .no_rust_panic();
    assert!(
        run.stderr
            .contains("ERROR: s3://bucket/repo: cannot read config"),
        "{run:#?}"
    );
    let tries = seen.lock().unwrap().len();
    assert!(tries <= 10, "{tries} requests for one object");
}

/// A read cut off in its first answer, whose store answers a `Range`
/// request with the whole object: the config is read whole and sound
/// (it was read as the cut part with the whole object after it, and
/// said to be corrupt). The fake store holds nothing else: the run fails
/// further on, not on the config.
#[test]
fn a_read_cut_off_is_read_again_from_its_start() {
    let env = TestEnv::new();
    // A real repository's config, served by the fake store.
    let local = env.path().join("local");
    let data = env.path().join("data");
    std::fs::create_dir(&data).unwrap();
    obnam_test_support::run(
        env.obnam()
            .arg("--repository")
            .arg(&local)
            .arg("backup")
            .arg(&data),
    )
    .ok();
    let config = std::fs::read(local.join("config")).unwrap();
    let (port, seen) = fake_s3(move |n, head| {
        let wanted = head.starts_with("get ") && head.contains("/repo/config");
        match (n, wanted) {
            // The first read of the config is cut half-way.
            (0, true) => response("200 OK", config.len(), &config[..config.len() / 2]),
            // Any later one, ranged or not, gets the whole object.
            (_, true) => response("200 OK", config.len(), &config),
            _ => {
                let body = b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code>\
                             <Message>no</Message></Error>";
                let mut out = format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                out.extend_from_slice(body);
                out
            }
        }
    });
    let run = run_with_deadline(
        &mut obnam_at(&env, port, &["genids"]),
        Duration::from_secs(300),
    )
    .fails()
    .no_rust_panic();
    assert!(!run.stderr.contains("corrupt"), "{run:#?}");
    let seen = seen.lock().unwrap();
    let config_reads: Vec<&String> = seen
        .iter()
        .filter(|h| h.starts_with("get ") && h.contains("/repo/config"))
        .collect();
    assert!(config_reads.len() >= 2, "{seen:#?}");
    assert!(
        config_reads.iter().all(|h| !h.contains("\r\nrange:")),
        "a read resumed with a range: {seen:#?}"
    );
}
