//! Stopping a node as an orchestrator does: SIGTERM (or Ctrl-C's SIGINT) turns `/readyz` to 503
//! at once, the node keeps serving through the drain period, then stops and exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn temp_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("keyroll-signals-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

async fn stops_gracefully_on(signal: &str) {
    let dir = temp_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyroll"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KEYROLL_DATA_DIR", &dir)
        .env("KEYROLL_LISTEN", "127.0.0.1:0")
        .env("KEYROLL_DRAIN_SECONDS", "2")
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("keyroll starts");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let first = loop {
        let line = lines.recv_timeout(Duration::from_secs(30)).expect("the node says where it listens");
        if line.contains("listening on") {
            break line;
        }
    };
    let url = first.split_whitespace().find(|w| w.starts_with("http://")).expect("an address").to_owned();
    // The same TLS provider as the server's (the client is built with rustls, unused here).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let status = |path: &'static str| {
        let (http, url) = (http.clone(), url.clone());
        async move { http.get(format!("{url}{path}")).send().await.map(|r| r.status().as_u16()).ok() }
    };
    assert_eq!(status("/readyz").await, Some(200));
    // The container health check: the binary asks the node it would serve as.
    let listen = url.trim_start_matches("http://").to_owned();
    let healthcheck = |path: &str| {
        Command::new(env!("CARGO_BIN_EXE_keyroll"))
            .env_clear()
            .env("KEYROLL_DATA_DIR", &dir)
            .env("KEYROLL_LISTEN", &listen)
            .args(["healthcheck", "--path", path])
            .output()
            .expect("healthcheck runs")
    };
    assert!(healthcheck("/healthz").status.success());
    assert!(healthcheck("/readyz").status.success());
    let missing = healthcheck("/nowhere");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("answered 404"), "{missing:?}");

    let sent = Instant::now();
    let killed = Command::new("kill").args([signal, &child.id().to_string()]).status().expect("kill runs");
    assert!(killed.success());
    // Unready at once, still serving while the load balancer takes the node out.
    let mut saw_draining = false;
    while sent.elapsed() < Duration::from_millis(1_500) {
        if status("/readyz").await == Some(503) {
            saw_draining = true;
            assert_eq!(status("/healthz").await, Some(200), "requests are still served while draining");
            assert!(healthcheck("/healthz").status.success(), "alive while draining");
            assert!(!healthcheck("/readyz").status.success(), "not ready while draining");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_draining, "/readyz turned 503 within the drain period");
    let code = loop {
        if let Some(code) = child.try_wait().expect("waited") {
            break code;
        }
        assert!(sent.elapsed() < Duration::from_secs(20), "the node did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(code.success(), "{signal}: exit {code:?}");
    assert!(!healthcheck("/healthz").status.success(), "nothing answers once stopped");
    assert!(sent.elapsed() >= Duration::from_secs(2), "it served through the drain period");
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(rest.iter().any(|l| l.contains("Keyroll stopped")), "{rest:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn sigterm_drains_then_exits_0() {
    stops_gracefully_on("-TERM").await;
}

#[tokio::test]
async fn sigint_drains_then_exits_0() {
    stops_gracefully_on("-INT").await;
}
