//! The reconnect policy: [`Reconnect`] (what the application configures), the backoff between
//! attempts, and which losses are worth a reconnect. Pure: no I/O, no clock, no randomness of
//! its own (the jitter is an input), so that its rules are tested on their own; the link
//! supervisor (`link.rs`) drives it.

use std::time::Duration;

use palio_protocol::tls::{self, Timeouts};

/// The SDK's QUIC timeouts: a ping after each second without hearing from the broker (which
/// answers it), and a connection given up after 5 s of silence, whatever idle timeout the
/// broker offers (the smaller of the two applies): a dead broker is noticed within seconds, and
/// the client can reconnect. The protocol's [`Timeouts::CLIENT`] offers 60 s instead, leaving
/// the decision to the broker.
pub(crate) const DEAD_BROKER: Timeouts = Timeouts {
    keep_alive: tls::KEEP_ALIVE,
    idle: tls::IDLE_TIMEOUT,
};

/// Publications buffered while disconnected, by default: 8 MiB of encoded frames.
///
/// ```
/// use palio::{DEFAULT_RECONNECT_BUFFER, Reconnect};
///
/// assert_eq!(Reconnect::new().get_buffer(), DEFAULT_RECONNECT_BUFFER);
/// assert_eq!(DEFAULT_RECONNECT_BUFFER, 8 * 1024 * 1024);
/// ```
pub const DEFAULT_RECONNECT_BUFFER: usize = 8 << 20;

/// How a [`Client`](crate::Client) reconnects after losing its broker.
///
/// On by default: after the connection is lost (the broker crashed, the network failed, the
/// broker stopped answering for the idle timeout), the client dials again after `initial`
/// (100 ms), doubling the wait up to `max` (2 s), with jitter, until it succeeds or
/// `max_attempts` attempts have failed (unlimited by default). Meanwhile best-effort
/// publications are buffered up to `buffer` bytes (8 MiB) and sent, in order, once the
/// connection is back. The first connect is never retried: [`Client::connect`](crate::Client::connect)
/// fails at once when nothing listens.
///
/// ```
/// use std::time::Duration;
/// use palio::{ConnectOptions, Reconnect};
///
/// let opts = ConnectOptions::new("127.0.0.1:7400").reconnect(
///     Reconnect::new()
///         .initial(Duration::from_millis(50))
///         .max(Duration::from_secs(5))
///         .max_attempts(20)
///         .buffer(1 << 20),
/// );
/// assert_eq!(opts.get_reconnect().get_max_attempts(), Some(20));
/// assert!(!ConnectOptions::new("127.0.0.1:7400").no_reconnect().get_reconnect().is_enabled());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    enabled: bool,
    initial: Duration,
    max: Duration,
    max_attempts: Option<u32>,
    buffer: usize,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            enabled: true,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            max_attempts: None,
            buffer: DEFAULT_RECONNECT_BUFFER,
        }
    }
}

impl Reconnect {
    /// The defaults: on, 100 ms doubling to 2 s, unlimited attempts, an 8 MiB buffer.
    ///
    /// ```
    /// let r = palio::Reconnect::new();
    /// assert!(r.is_enabled());
    /// assert_eq!(r.get_max_attempts(), None); // unlimited
    /// assert_eq!(r.get_buffer(), palio::DEFAULT_RECONNECT_BUFFER);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// No reconnect: a lost connection ends the client.
    ///
    /// ```
    /// use palio::{ConnectOptions, Reconnect};
    ///
    /// let opts = ConnectOptions::new("127.0.0.1:7400").reconnect(Reconnect::disabled());
    /// assert!(!opts.get_reconnect().is_enabled());
    /// let off = ConnectOptions::new("127.0.0.1:7400").no_reconnect();
    /// assert_eq!(opts.get_reconnect(), off.get_reconnect());
    /// ```
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// The wait before the first attempt (at least 1 ms); it doubles after each failure.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palio::Reconnect;
    ///
    /// let eager = Reconnect::new().initial(Duration::from_millis(10));
    /// # let _ = eager;
    /// // A zero wait means 1 ms.
    /// let one_ms = Reconnect::new().initial(Duration::from_millis(1));
    /// assert_eq!(Reconnect::new().initial(Duration::ZERO), one_ms);
    /// ```
    pub fn initial(mut self, wait: Duration) -> Self {
        self.initial = wait.max(Duration::from_millis(1));
        self
    }

    /// The longest wait between attempts.
    ///
    /// ```
    /// use std::time::Duration;
    /// use palio::Reconnect;
    ///
    /// // 100 ms, 200 ms, … up to 30 s between attempts (each with jitter).
    /// let patient = Reconnect::new().max(Duration::from_secs(30));
    /// assert_ne!(patient, Reconnect::new());
    /// ```
    pub fn max(mut self, wait: Duration) -> Self {
        self.max = wait.max(Duration::from_millis(1));
        self
    }

    /// Gives up after `n` failed attempts in a row (at least 1).
    ///
    /// ```
    /// use palio::Reconnect;
    ///
    /// assert_eq!(Reconnect::new().max_attempts(5).get_max_attempts(), Some(5));
    /// assert_eq!(Reconnect::new().max_attempts(0).get_max_attempts(), Some(1)); // at least 1
    /// ```
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n.max(1));
        self
    }

    /// The bytes of best-effort publications kept while disconnected; beyond them
    /// [`Client::publish`](crate::Client::publish) fails with
    /// [`Error::PublishBufferFull`](crate::Error::PublishBufferFull).
    ///
    /// ```
    /// let r = palio::Reconnect::new().buffer(64 * 1024);
    /// assert_eq!(r.get_buffer(), 64 * 1024);
    /// ```
    pub fn buffer(mut self, bytes: usize) -> Self {
        self.buffer = bytes;
        self
    }

    /// Whether the client reconnects.
    ///
    /// ```
    /// use palio::Reconnect;
    ///
    /// assert!(Reconnect::new().is_enabled());
    /// assert!(!Reconnect::disabled().is_enabled());
    /// ```
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The attempts after which the client gives up (`None`: never).
    ///
    /// ```
    /// use palio::Reconnect;
    ///
    /// assert_eq!(Reconnect::new().get_max_attempts(), None);
    /// assert_eq!(Reconnect::new().max_attempts(20).get_max_attempts(), Some(20));
    /// ```
    pub fn get_max_attempts(&self) -> Option<u32> {
        self.max_attempts
    }

    /// The byte bound of the publications kept while disconnected.
    ///
    /// ```
    /// let r = palio::Reconnect::new().buffer(1 << 20);
    /// assert_eq!(r.get_buffer(), 1 << 20);
    /// ```
    pub fn get_buffer(&self) -> usize {
        self.buffer
    }

    /// The wait before attempt `attempt` (1 for the first), or `None` once the attempts are
    /// exhausted. `jitter` in `[0, 1)` picks the wait within the upper half of the
    /// exponential step, so that clients cut off together do not all dial at once.
    pub(crate) fn delay(&self, attempt: u32, jitter: f64) -> Option<Duration> {
        if self.max_attempts.is_some_and(|m| attempt > m) {
            return None;
        }
        let doublings = attempt.saturating_sub(1).min(30);
        let step = self
            .initial
            .saturating_mul(1u32 << doublings)
            .min(self.max.max(self.initial));
        let jitter = jitter.clamp(0.0, 1.0);
        Some(step.mul_f64(0.5 + jitter / 2.0))
    }
}

/// Whether a connection that ended this way is worth dialing again: yes when it was lost
/// (timed out, reset, a transport failure); no when the application closed it or the broker
/// closed it on purpose with a reason (the link supervisor looks at that reason: it dials
/// again after a clean shutdown, not after a slow consumer or a protocol violation).
pub(crate) fn worth_retrying(e: &quinn::ConnectionError) -> bool {
    use quinn::ConnectionError as E;
    match e {
        E::ApplicationClosed(_) | E::LocallyClosed => false,
        E::TimedOut
        | E::Reset
        | E::TransportError(_)
        | E::ConnectionClosed(_)
        | E::VersionMismatch
        | E::CidsExhausted => true,
    }
}

/// A jitter in `[0, 1)` from a randomly keyed hash of the time (no random-number dependency).
pub(crate) fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum_within_their_jitter() {
        let r = Reconnect::new();
        let ms = |a, j| r.delay(a, j).map(|d| d.as_millis());
        assert_eq!(ms(1, 0.0), Some(50));
        assert_eq!(ms(1, 0.999_999), Some(99));
        assert_eq!(ms(2, 0.0), Some(100));
        assert_eq!(ms(3, 0.0), Some(200));
        assert_eq!(ms(5, 0.0), Some(800));
        // Capped at 2 s from the sixth attempt on, and no overflow far beyond.
        assert_eq!(ms(6, 0.0), Some(1000));
        assert_eq!(ms(6, 0.999_999), Some(1999));
        assert_eq!(ms(1000, 0.0), Some(1000));
        assert_eq!(ms(u32::MAX, 0.5), Some(1500));
    }

    #[test]
    fn attempts_end_at_the_maximum() {
        let r = Reconnect::new().max_attempts(3);
        assert!(r.delay(3, 0.0).is_some());
        assert_eq!(r.delay(4, 0.0), None);
        assert_eq!(Reconnect::new().max_attempts(0).get_max_attempts(), Some(1));
    }

    #[test]
    fn a_maximum_below_the_initial_wait_keeps_the_initial_wait() {
        let r = Reconnect::new()
            .initial(Duration::from_secs(1))
            .max(Duration::from_millis(10));
        assert_eq!(r.delay(4, 0.0), Some(Duration::from_millis(500)));
    }

    #[test]
    fn only_lost_connections_are_retried() {
        use quinn::ConnectionError as E;
        assert!(worth_retrying(&E::TimedOut));
        assert!(worth_retrying(&E::Reset));
        assert!(!worth_retrying(&E::LocallyClosed));
        let shutdown = E::ApplicationClosed(quinn::ApplicationClose {
            error_code: quinn::VarInt::from_u32(12),
            reason: bytes::Bytes::from_static(b"broker shutting down"),
        });
        assert!(!worth_retrying(&shutdown));
    }

    #[test]
    fn a_dead_broker_is_noticed_within_seconds_and_a_live_one_never_dropped() {
        assert!(DEAD_BROKER.idle <= Duration::from_secs(5));
        assert!(DEAD_BROKER.keep_alive * 3 <= DEAD_BROKER.idle);
        assert!(DEAD_BROKER.keep_alive <= Timeouts::BROKER.keep_alive);
    }

    #[test]
    fn jitter_is_within_its_range() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
