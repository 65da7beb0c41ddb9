//! The `[timeouts]` section.

use serde::Deserialize;

use super::ConfigError;

/// The `[timeouts]` section: how fast a silent connection (a peer broker or client that
/// crashed or became unreachable without closing) is noticed. Applied to every QUIC connection
/// of the broker, accepted and dialed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Milliseconds without receiving anything on a connection after which the broker sends a
    /// QUIC PING (the other side's acknowledgement keeps the connection alive).
    pub keep_alive_ms: u64,
    /// Milliseconds without receiving anything after which a connection is closed as dead: a
    /// peer link goes down and is routed around, a client's subscriptions are dropped. The
    /// connection uses the smaller of the two sides' idle timeouts; SDK clients offer a longer
    /// one, so this one decides.
    pub idle_timeout_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            keep_alive_ms: ms(palio_protocol::tls::KEEP_ALIVE),
            idle_timeout_ms: ms(palio_protocol::tls::IDLE_TIMEOUT),
        }
    }
}

impl Timeouts {
    /// Shortest keep-alive accepted, in milliseconds.
    pub const MIN_KEEP_ALIVE_MS: u64 = 100;
    /// Longest idle timeout accepted, in milliseconds (an hour).
    pub const MAX_IDLE_TIMEOUT_MS: u64 = 3_600_000;

    /// The QUIC timeouts these settings describe.
    pub fn quic(&self) -> palio_protocol::tls::Timeouts {
        palio_protocol::tls::Timeouts {
            keep_alive: std::time::Duration::from_millis(self.keep_alive_ms),
            idle: std::time::Duration::from_millis(self.idle_timeout_ms),
        }
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.keep_alive_ms < Self::MIN_KEEP_ALIVE_MS
            || self.idle_timeout_ms > Self::MAX_IDLE_TIMEOUT_MS
        {
            return Err(ConfigError::Invalid(format!(
                "timeouts.keep_alive_ms must be at least {} and timeouts.idle_timeout_ms at most {}",
                Self::MIN_KEEP_ALIVE_MS,
                Self::MAX_IDLE_TIMEOUT_MS
            )));
        }
        if self.keep_alive_ms >= self.idle_timeout_ms {
            return Err(ConfigError::Invalid(format!(
                "timeouts.keep_alive_ms ({}) must be less than timeouts.idle_timeout_ms ({}), \
                 or idle connections time out",
                self.keep_alive_ms, self.idle_timeout_ms
            )));
        }
        Ok(())
    }
}
