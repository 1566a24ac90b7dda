//! An echo server on signal-manager's own WebSocket layer, for conformance testing:
//! `cargo run -p signal-server --example ws_echo -- 127.0.0.1:9001`, then
//! `scripts/autobahn.sh ws://127.0.0.1:9001 target/autobahn-report`.

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = std::net::TcpListener::bind(&addr)?;
    eprintln!("ws_echo: listening on ws://{}/", listener.local_addr()?);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(signal_server::ws_echo::serve(listener))
}
