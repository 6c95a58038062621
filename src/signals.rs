//! Process signals turned into events: SIGTERM/SIGINT cancel, SIGHUP asks for a reload.

use futures::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Installs the handlers. SIGTERM/SIGINT cancel `shutdown` (a second one exits at once); each
/// SIGHUP sends one reload request.
///
/// Must be called from inside the tokio runtime; the returned receiver yields reload requests.
pub fn install(shutdown: CancellationToken) -> std::io::Result<mpsc::Receiver<()>> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while let Some(sig) = signals.next().await {
            match sig {
                SIGHUP => {
                    // A reload already queued covers this one too.
                    let _ = tx.try_send(());
                }
                _ if shutdown.is_cancelled() => {
                    // A second request to stop: do not wait for the graceful path. State writes
                    // are atomic renames, so stopping here leaves a valid state file.
                    tracing::warn!("signal {sig} received again; exiting now");
                    std::process::exit(0);
                }
                _ => {
                    tracing::info!("signal {sig} received; stopping");
                    shutdown.cancel();
                }
            }
        }
    });
    Ok(rx)
}
