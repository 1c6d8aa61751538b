//! Retrying transient failures with exponential backoff.
//!
//! A registry under load answers 429 Too Many Requests or a 5xx, and a connection can be reset
//! mid-transfer. Each such failure is retried after `initial · 2ⁿ` (capped at `max_delay`, with
//! jitter so that parallel transfers do not retry in lockstep), at most `attempts` times in all
//! and never past `budget` of total time. Anything else (401, 403, 404, a digest mismatch) fails
//! at once: retrying cannot fix it.

use std::future::Future;
use std::time::{Duration, Instant};

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    pub initial: Duration,
    pub max_delay: Duration,
    /// No new attempt starts after this much time since the first.
    pub budget: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            initial: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            budget: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `n` (1-based), before jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max_delay)
    }
}

/// What a failed attempt says about the next one.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

/// The last error, how many attempts were made, and how long it took.
#[derive(Debug)]
pub struct Exhausted<E> {
    pub error: E,
    pub attempts: u32,
    pub elapsed: Duration,
}

/// Run `op` until it succeeds, fails permanently, or the policy is spent. `op` gets the attempt
/// number (1-based), so it can start over (reopen a file, restart a download).
pub async fn retry<T, E, F, Fut>(policy: &RetryPolicy, mut op: F) -> Result<T, Exhausted<E>>
where
    E: Transient,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let start = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(error) => {
                let pause = jitter(policy.delay(attempt));
                let out_of_time = start.elapsed() + pause >= policy.budget;
                if !error.is_transient() || attempt >= policy.attempts.max(1) || out_of_time {
                    return Err(Exhausted {
                        error,
                        attempts: attempt,
                        elapsed: start.elapsed(),
                    });
                }
                tracing::debug!(attempt, ?pause, "transient registry failure; retrying");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Between half and all of `d`, chosen from the clock's low bits.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let fraction = 0.5 + f64::from(nanos % 1000) / 2000.0;
    d.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug, PartialEq)]
    enum E {
        Busy,
        Gone,
    }
    impl Transient for E {
        fn is_transient(&self) -> bool {
            *self == E::Busy
        }
    }

    fn fast(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            initial: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
            budget: Duration::from_secs(10),
        }
    }

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn transient_failures_are_retried_until_success() {
        let calls = AtomicU32::new(0);
        let r = run(retry(&fast(5), |n| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { if n < 3 { Err(E::Busy) } else { Ok(n) } }
        }));
        assert_eq!(r.unwrap(), 3);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn permanent_failures_are_not_retried() {
        let calls = AtomicU32::new(0);
        let r: Result<(), _> = run(retry(&fast(5), |_| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(E::Gone) }
        }));
        let e = r.unwrap_err();
        assert_eq!((e.error, e.attempts), (E::Gone, 1));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn attempts_are_bounded() {
        let r: Result<(), _> = run(retry(&fast(4), |_| async { Err(E::Busy) }));
        assert_eq!(r.unwrap_err().attempts, 4);
    }

    #[test]
    fn time_is_bounded() {
        let policy = RetryPolicy {
            attempts: 1000,
            initial: Duration::from_millis(20),
            max_delay: Duration::from_millis(20),
            budget: Duration::from_millis(100),
        };
        let start = Instant::now();
        let r: Result<(), _> = run(retry(&policy, |_| async { Err(E::Busy) }));
        let e = r.unwrap_err();
        assert!(e.attempts < 20, "{} attempts", e.attempts);
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn delays_double_and_are_capped() {
        let p = RetryPolicy {
            attempts: 10,
            initial: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
            budget: Duration::from_secs(60),
        };
        assert_eq!(p.delay(1), Duration::from_millis(100));
        assert_eq!(p.delay(2), Duration::from_millis(200));
        assert_eq!(p.delay(3), Duration::from_millis(400));
        assert_eq!(p.delay(4), Duration::from_millis(500));
        assert_eq!(p.delay(40), Duration::from_millis(500));
    }
}
