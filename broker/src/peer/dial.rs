//! Keeping a configured peer address linked: dial, run the link, redial with backoff.
//!
//! A failed dial is logged as a warning the first time (at startup, or after the link was
//! up), with the address and the reason; the retries that fail the same way are logged at
//! debug level, so that a peer that stays away does not flood the log. `/routes` (`dialed`)
//! and `palio server info` show the last error all along.

use std::sync::Arc;
use std::time::{Duration, Instant};

use palio_topology::BrokerId;

use super::Links;
use super::handshake::dial_handshake;
use super::link::run_link;
use crate::dial_states::DialState;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

fn set_state(shared: &Links, addr: &str, f: impl FnOnce(&mut DialState)) {
    if let Ok(mut s) = shared.dial_states.lock() {
        f(s.entry(addr.to_owned()).or_default());
    }
}

/// Keeps a link to `addr` up until shutdown: dial, run, and redial with backoff.
pub(crate) async fn dial_loop(shared: Arc<Links>, addr: String) {
    let gauge = shared.metrics.peer_link_up.with_label_values(&[&addr]);
    gauge.set(0);
    set_state(&shared, &addr, |s| s.state = "connecting");
    let mut backoff = BACKOFF_MIN;
    let mut known: Option<BrokerId> = None;
    // Whether the failures since the last link (or startup) have been warned about.
    let mut warned = false;
    loop {
        if shared.shutdown.is_cancelled() {
            return;
        }
        let attempt = Instant::now();
        let linked_elsewhere = known.is_some_and(|id| {
            shared
                .live_links
                .lock()
                .map(|l| l.contains_key(&id))
                .unwrap_or(false)
        });
        if linked_elsewhere {
            set_state(&shared, &addr, |s| s.state = "linked by peer");
            backoff = Duration::from_secs(1);
        } else {
            set_state(&shared, &addr, |s| {
                s.state = "connecting";
                s.attempts += 1;
            });
            match dial_handshake(&shared, &addr).await {
                Ok((conn, h)) => {
                    let hello = h.hello.clone();
                    known = Some(hello.id);
                    warned = false;
                    set_state(&shared, &addr, |s| {
                        s.state = "up";
                        s.peer = Some((hello.id, hello.name.clone()));
                        s.last_error = None;
                    });
                    // `run_link` sets the gauge (through `track_link`), both ways.
                    let started = Instant::now();
                    run_link(&shared, &conn, h).await;
                    set_state(&shared, &addr, |s| s.state = "down");
                    if started.elapsed() > Duration::from_secs(5) {
                        backoff = BACKOFF_MIN;
                    }
                }
                Err(e) => {
                    if warned {
                        tracing::debug!(peer = %addr, error = %e, "peer dial failed again");
                    } else {
                        tracing::warn!(
                            peer = %addr,
                            error = %e,
                            "cannot link to configured peer; retrying with backoff (further \
                             failures are logged at debug level)"
                        );
                        warned = true;
                    }
                    shared
                        .metrics
                        .peer_dial_failures
                        .with_label_values(&[&addr])
                        .inc();
                    set_state(&shared, &addr, |s| {
                        s.state = "failed";
                        s.last_error = Some(e);
                    });
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.saturating_sub(attempt.elapsed())) => {}
            () = shared.shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
