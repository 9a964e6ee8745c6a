//! Server-wide shutdown signal.
//!
//! SIGTERM, SIGINT and the SHUTDOWN command all trigger the same signal; the
//! accept loops stop, connections finish what is in flight and close, and
//! blocked clients are woken with an error.

use tokio::sync::watch;

/// A latch that is set once and observed by every task.
#[derive(Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A latch not yet set.
    pub fn new() -> Shutdown {
        Shutdown {
            tx: watch::channel(false).0,
        }
    }

    /// Sets the latch.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Waits until the latch is set.
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // Only fails if the sender is gone, which it cannot be while `self` lives.
        let _ = rx.wait_for(|set| *set).await;
    }
}
