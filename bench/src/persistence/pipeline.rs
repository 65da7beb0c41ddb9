//! Pipelined publishing with a bounded window of acks, the same loop for every system.
//!
//! The sending loop queues a message and hands its ack future to an acker task through a
//! channel of `window` places; the acker awaits the acks in publish order. So at most about
//! `window` publications are unacked at a time (each client also bounds its own in-flight
//! acks to the same window), and the loop ends with the last ack.

use std::future::{Future, IntoFuture};

use anyhow::Context;
use tokio::sync::mpsc;

/// Publishes messages `0..count` with `send` (which returns once message `seq` is queued,
/// with the future of its ack), awaiting acks in order with up to `window` outstanding;
/// `check` inspects each ack. Returns the number of acks.
pub(crate) async fn publish<S, SF, A, T, E, C>(
    count: u64,
    window: usize,
    mut send: S,
    mut check: C,
) -> anyhow::Result<u64>
where
    S: FnMut(u64) -> SF,
    SF: Future<Output = anyhow::Result<A>>,
    A: IntoFuture<Output = Result<T, E>> + Send + 'static,
    A::IntoFuture: Send,
    E: std::error::Error + Send + Sync + 'static,
    T: Send + 'static,
    C: FnMut(u64, T) -> anyhow::Result<()> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<(u64, A)>(window.max(1));
    let acker = tokio::spawn(async move {
        let mut acked = 0u64;
        while let Some((seq, ack)) = rx.recv().await {
            let outcome = ack
                .into_future()
                .await
                .with_context(|| format!("publication {seq} was not acked"))?;
            check(seq, outcome)?;
            acked += 1;
        }
        anyhow::Ok(acked)
    });
    let mut sent = Ok(());
    for seq in 0..count {
        let ack = match send(seq).await {
            Ok(a) => a,
            Err(e) => {
                sent = Err(e.context(format!("sending publication {seq}")));
                break;
            }
        };
        if tx.send((seq, ack)).await.is_err() {
            // The acker stopped on an error: it tells which.
            break;
        }
    }
    drop(tx);
    let acked = acker.await.context("the acker task")??;
    sent?;
    if acked != count {
        anyhow::bail!("{acked} of {count} publications acked");
    }
    Ok(acked)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    type Refused = std::io::Error;

    fn refused() -> Refused {
        std::io::Error::other("refused")
    }

    #[tokio::test]
    async fn acks_are_checked_in_publish_order() {
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        let acked = publish(
            100,
            8,
            |seq| async move { anyhow::Ok(std::future::ready(Ok::<u64, Refused>(seq))) },
            move |seq, got| {
                anyhow::ensure!(seq == got && s.fetch_add(1, Ordering::SeqCst) == seq);
                Ok(())
            },
        )
        .await
        .unwrap();
        assert_eq!(acked, 100);
        assert_eq!(seen.load(Ordering::SeqCst), 100);
    }

    #[tokio::test]
    async fn a_refused_ack_fails_the_run() {
        let e = publish(
            10,
            4,
            |seq| async move {
                anyhow::Ok(std::future::ready(if seq == 3 {
                    Err(refused())
                } else {
                    Ok(())
                }))
            },
            |_, ()| Ok(()),
        )
        .await
        .unwrap_err();
        assert!(format!("{e:#}").contains("publication 3"), "{e:#}");
    }

    #[tokio::test]
    async fn a_failed_send_fails_the_run() {
        let e = publish(
            10,
            4,
            |seq| async move {
                anyhow::ensure!(seq != 5, "connection lost");
                anyhow::Ok(std::future::ready(Ok::<(), Refused>(())))
            },
            |_, ()| Ok(()),
        )
        .await
        .unwrap_err();
        assert!(format!("{e:#}").contains("sending publication 5"), "{e:#}");
    }
}
