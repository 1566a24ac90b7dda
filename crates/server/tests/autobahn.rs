//! WebSocket conformance: the Autobahn TestSuite's fuzzing client (sections 1–7, 9 and 10)
//! against an echo server on the server's own WebSocket layer. `scripts/autobahn.sh`
//! installs the suite (Python 2.7) on first use and fails on any case that FAILED, closed
//! with the wrong code or uncleanly; this test fails with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn autobahn_fuzzingclient_passes_every_case() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(signal_server::ws_echo::serve(listener))
    });
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let report = std::env::temp_dir().join(format!("autobahn-report-{port}"));
    let out = Command::new(root.join("scripts/autobahn.sh"))
        .arg(format!("ws://127.0.0.1:{port}"))
        .arg(&report)
        .current_dir(&root)
        .output()
        .expect("scripts/autobahn.sh runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "Autobahn TestSuite failed ({}):\n{text}",
        out.status
    );
    let _ = std::fs::remove_dir_all(&report);
}
