//! Logging set-up from `[logging]`: level (or an EnvFilter directive), JSON or text, to the
//! console and/or a file. `RUST_LOG` overrides the configured level.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogFormat, LoggingConfig};

/// Installs the global subscriber. Safe to call once; later calls are ignored.
pub fn init(cfg: &LoggingConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let mut ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let writer = {
        let file = cfg.file.as_ref().and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| eprintln!("logging.file {}: {e}; logging to stderr", p.display()))
                .ok()
        });
        match file {
            Some(f) => {
                ansi = false;
                fmt::writer::BoxMakeWriter::new(std::sync::Mutex::new(f))
            }
            None => fmt::writer::BoxMakeWriter::new(std::io::stderr),
        }
    };
    let layer = fmt::layer()
        .with_writer(writer)
        .with_target(false)
        .with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match cfg.format {
        LogFormat::Json => registry.with(layer.json()).try_init(),
        LogFormat::Compact => registry.with(layer.compact()).try_init(),
        LogFormat::Pretty => registry.with(layer).try_init(),
    };
}
