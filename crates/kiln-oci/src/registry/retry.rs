//! Retrying a network operation with exponential backoff: the one loop the
//! registry client and `ADD <url>` downloads share.

use std::future::Future;
use std::time::Duration;

/// How often and how patiently to retry: `retries` extra attempts, the
/// first after `initial_delay`, each later one after twice the previous
/// delay, never more than `max_delay` (a server's `Retry-After` wins, up to
/// `max_delay` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first.
    pub retries: u32,
    /// The first backoff delay.
    pub initial_delay: Duration,
    /// The longest backoff delay.
    pub max_delay: Duration,
}

/// What a retry loop needs to know about an error.
pub trait Transient: std::fmt::Display {
    /// True when trying again may succeed (timeouts, broken connections,
    /// 5xx, 429).
    fn is_transient(&self) -> bool;
    /// How long the server asked to wait, when it said.
    fn wait_hint(&self) -> Option<Duration> {
        None
    }
}

impl RetryPolicy {
    /// Runs `op` until it succeeds, fails with an error that is not
    /// transient, or has failed `retries + 1` times; returns the last result.
    /// `what` names the operation in the warning logged before each retry.
    pub async fn run<T, E, F, Fut>(&self, what: &str, mut op: F) -> Result<T, E>
    where
        E: Transient,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut delay = self.initial_delay;
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e) if e.is_transient() && attempt < self.retries => {
                    attempt += 1;
                    let wait = e.wait_hint().unwrap_or(delay).min(self.max_delay);
                    tracing::warn!(error = %e, attempt, retries = self.retries, ?wait, "{what} failed; retrying");
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(self.max_delay);
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct Flaky(bool);

    impl std::fmt::Display for Flaky {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(if self.0 { "transient" } else { "permanent" })
        }
    }

    impl Transient for Flaky {
        fn is_transient(&self) -> bool {
            self.0
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_only_and_stops_after_the_count() {
        let policy = RetryPolicy {
            retries: 3,
            initial_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let calls = AtomicU32::new(0);
        let r: Result<(), Flaky> = policy
            .run("test", || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(Flaky(true)) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        calls.store(0, Ordering::SeqCst);
        let r: Result<(), Flaky> = policy
            .run("test", || {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(Flaky(false)) }
            })
            .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // Succeeds on the third attempt.
        calls.store(0, Ordering::SeqCst);
        let r = policy
            .run("test", || {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        Err(Flaky(true))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(r.ok(), Some(2));
    }
}
