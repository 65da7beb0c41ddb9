//! The frames a client sends: encoded by the task that sends them, in order, into one buffer
//! that the writer task hands to the control stream.
//!
//! Encoding where the frame is made (rather than in the writer task) keeps a publication's
//! attributes and payload on the thread that built them: they are read while still in its
//! cache and freed there, instead of crossing to the writer's thread a few small allocations
//! at a time. The writer takes the whole buffer at once and gives it to quinn without a copy.
//!
//! The buffer is bounded: a sender waits while it holds [`LIMIT`] bytes or more (the
//! backpressure of the control stream; QUIC flow control holds the writer when the broker does
//! not read). A [`room`](Outgoing::room) taken before a [`push`](Outgoing::push) lets a
//! sender wait first and then queue without waiting (the producer records and queues a
//! publication together); pushes may thus go over the limit by what the senders that waited
//! together push.
//!
//! While the connection is down (the client reconnecting, see `link.rs`) the buffer is
//! **offline**: best-effort publications go to a second buffer bounded by the reconnect
//! policy's bytes (beyond it [`NotQueued::BufferFull`]), other frames are refused
//! ([`NotQueued::Offline`]: requests fail, and the producer resends its unacknowledged
//! publications from its own record). The link supervisor queues the frames that restore the
//! client's state with [`push_restore`](Outgoing::push_restore), then
//! [`open`](Outgoing::open)s the buffer: the publications kept meanwhile follow them, in order.

use std::sync::{Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use palio_filter::Event;
use palio_protocol::{ClientFrame, FrameError};
use tokio::sync::Notify;

/// Bytes queued before senders wait: about a thousand publications of 128 bytes.
pub(crate) const LIMIT: usize = 256 * 1024;

/// Why a frame was not queued.
#[derive(Debug)]
pub(crate) enum NotQueued {
    /// The writer stopped: the connection is closed or closing.
    Closed,
    /// The buffer is full (only from [`Outgoing::try_push`]).
    Full,
    /// The frame could not be encoded (past the frame limit, which callers check first).
    Encode(FrameError),
    /// The connection is down (the client is reconnecting): only publications are kept.
    Offline,
    /// The connection is down and the publications kept meanwhile fill their bound.
    BufferFull {
        /// The bound, in bytes.
        limit: usize,
    },
}

/// The buffer shared by the senders and the writer.
#[derive(Debug)]
pub(crate) struct Outgoing {
    state: Mutex<State>,
    /// Wakes the writer when bytes were queued or the buffer closed.
    queued: Notify,
    /// Wakes senders waiting for room when the writer took the buffer or stopped.
    room: Notify,
}

#[derive(Debug)]
struct State {
    buf: BytesMut,
    closed: bool,
    /// The largest frame body the broker accepts.
    max: usize,
    /// While the connection is down: the publications kept for the next one.
    offline: Option<Offline>,
}

#[derive(Debug)]
struct Offline {
    buf: BytesMut,
    limit: usize,
}

impl Outgoing {
    /// An empty buffer for frames of at most `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        Self {
            state: Mutex::new(State {
                buf: BytesMut::with_capacity(LIMIT),
                closed: false,
                max,
                offline: None,
            }),
            queued: Notify::new(),
            room: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the buffer usable (it only appends bytes).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the buffer is under its limit.
    pub(crate) async fn room(&self) -> Result<(), NotQueued> {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.lock();
                if s.closed {
                    return Err(NotQueued::Closed);
                }
                // Offline, nothing is sent: the publication paths apply their own bounds.
                if s.buf.len() < LIMIT || s.offline.is_some() {
                    return Ok(());
                }
            }
            notified.await;
        }
    }

    /// Queues `frame` without waiting for room.
    pub(crate) fn push(&self, frame: &ClientFrame) -> Result<(), NotQueued> {
        self.append(|buf, max| match frame {
            ClientFrame::Publish {
                attributes,
                payload,
            } => palio_protocol::encode_publish(attributes, payload, buf, max),
            other => palio_protocol::encode_into(other, buf, max),
        })
    }

    /// Queues `frame` if the buffer is under its limit.
    pub(crate) fn try_push(&self, frame: &ClientFrame) -> Result<(), NotQueued> {
        if self.lock().buf.len() >= LIMIT {
            return Err(NotQueued::Full);
        }
        self.push(frame)
    }

    /// Waits for room, then queues `frame`.
    pub(crate) async fn send(&self, frame: &ClientFrame) -> Result<(), NotQueued> {
        self.room().await?;
        self.push(frame)
    }

    /// Waits for room, then queues a publication of these parts (no frame is built); `size`
    /// is its encoded length. Offline, it is kept for the next connection if it fits.
    pub(crate) async fn send_publish(
        &self,
        attributes: &Event,
        payload: &[u8],
        size: usize,
    ) -> Result<(), NotQueued> {
        self.room().await?;
        // One lock for both cases: this is every best-effort publication's path.
        {
            let mut s = self.lock();
            if s.closed {
                return Err(NotQueued::Closed);
            }
            let State {
                buf, max, offline, ..
            } = &mut *s;
            let buf = match offline {
                // The length prefix comes on top of the body.
                Some(off) if off.buf.len().saturating_add(size).saturating_add(4) > off.limit => {
                    return Err(NotQueued::BufferFull { limit: off.limit });
                }
                // Kept for the next connection: nothing to wake the writer for.
                Some(off) => {
                    return palio_protocol::encode_publish(attributes, payload, &mut off.buf, *max)
                        .map_err(NotQueued::Encode);
                }
                None => buf,
            };
            palio_protocol::encode_publish(attributes, payload, buf, *max)
                .map_err(NotQueued::Encode)?;
        }
        self.queued.notify_one();
        Ok(())
    }

    /// Queues an encoded frame (length prefix included) without waiting for room.
    pub(crate) fn push_encoded(&self, frame: &[u8]) -> Result<(), NotQueued> {
        self.append(|buf, _| {
            buf.extend_from_slice(frame);
            Ok(())
        })
    }

    fn append(
        &self,
        encode: impl FnOnce(&mut BytesMut, usize) -> Result<(), FrameError>,
    ) -> Result<(), NotQueued> {
        {
            let mut s = self.lock();
            if s.closed {
                return Err(NotQueued::Closed);
            }
            if s.offline.is_some() {
                return Err(NotQueued::Offline);
            }
            let max = s.max;
            encode(&mut s.buf, max).map_err(NotQueued::Encode)?;
        }
        self.queued.notify_one();
        Ok(())
    }

    /// The connection is down: drops what was queued for it (frames of requests that fail
    /// with the connection, and publications it took with it) and keeps publications up to
    /// `limit` bytes from now on. Senders waiting for room go on.
    pub(crate) fn go_offline(&self, limit: usize) {
        {
            let mut s = self.lock();
            s.buf.clear();
            if s.offline.is_none() {
                s.offline = Some(Offline {
                    buf: BytesMut::new(),
                    limit,
                });
            }
        }
        self.room.notify_waiters();
    }

    /// A new connection whose broker accepts frames of at most `max` bytes: frames restoring
    /// the client's state may be queued ([`push_restore`](Self::push_restore)).
    pub(crate) fn set_max(&self, max: usize) {
        self.lock().max = max;
    }

    /// Queues a frame restoring the client's state on a new connection, ahead of what was
    /// kept offline.
    pub(crate) fn push_restore(&self, frame: &ClientFrame) -> Result<(), NotQueued> {
        {
            let mut s = self.lock();
            if s.closed {
                return Err(NotQueued::Closed);
            }
            let max = s.max;
            palio_protocol::encode_into(frame, &mut s.buf, max).map_err(NotQueued::Encode)?;
        }
        self.queued.notify_one();
        Ok(())
    }

    /// [`push_restore`](Self::push_restore) of an encoded frame.
    pub(crate) fn push_restore_encoded(&self, frame: &[u8]) -> Result<(), NotQueued> {
        {
            let mut s = self.lock();
            if s.closed {
                return Err(NotQueued::Closed);
            }
            s.buf.extend_from_slice(frame);
        }
        self.queued.notify_one();
        Ok(())
    }

    /// The client's state is restored: the publications kept offline follow the restoring
    /// frames, and every frame is queued normally again.
    pub(crate) fn open(&self) {
        {
            let mut s = self.lock();
            if let Some(off) = s.offline.take() {
                s.buf.extend_from_slice(&off.buf);
            }
        }
        self.queued.notify_one();
    }

    /// The writer's side: everything queued, once there is something (`None` once closed and
    /// empty).
    pub(crate) async fn take(&self) -> Option<Bytes> {
        loop {
            let notified = self.queued.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if !s.buf.is_empty() {
                    let bytes = s.buf.split().freeze();
                    if s.buf.capacity() < LIMIT / 4 {
                        s.buf.reserve(LIMIT);
                    }
                    drop(s);
                    self.room.notify_waiters();
                    return Some(bytes);
                }
                if s.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Stops queueing: later sends fail, waiting senders are released, and the writer ends
    /// once it has taken what is left.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.room.notify_waiters();
        self.queued.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use palio_protocol::DEFAULT_MAX_FRAME;

    use super::*;

    fn event(seq: i32) -> Event {
        Event::new().with("seq", seq).unwrap()
    }

    async fn publish(out: &Outgoing, seq: i32) -> Result<(), NotQueued> {
        let e = event(seq);
        let size = palio_protocol::publish_len(&e, b"p");
        out.send_publish(&e, b"p", size).await
    }

    /// The frames of one take, decoded.
    async fn frames(out: &Outgoing) -> Vec<ClientFrame> {
        let bytes = out.take().await.expect("something queued");
        let mut rest = &bytes[..];
        let mut frames = Vec::new();
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            frames.push(palio_protocol::decode(&rest[4..4 + len]).unwrap());
            rest = &rest[4 + len..];
        }
        frames
    }

    #[tokio::test]
    async fn offline_keeps_publications_within_the_bound_and_sends_them_after_the_restoring_frames()
    {
        let out = Outgoing::new(DEFAULT_MAX_FRAME);
        publish(&out, 0).await.unwrap();
        // Lost with the connection: dropped. Room for three offline.
        let one = palio_protocol::publish_len(&event(1), b"p") + 4;
        out.go_offline(3 * one);
        let flush = ClientFrame::Flush { request: 1 };
        assert!(matches!(out.send(&flush).await, Err(NotQueued::Offline)));
        publish(&out, 1).await.unwrap();
        publish(&out, 2).await.unwrap();
        publish(&out, 3).await.unwrap();
        for seq in 4..10 {
            match publish(&out, seq).await {
                Err(NotQueued::BufferFull { limit }) => assert_eq!(limit, 3 * one),
                other => panic!("publication {seq} beyond the bound: {other:?}"),
            }
        }
        let subscribe = ClientFrame::Subscribe {
            request: 2,
            filter: "seq > 0".into(),
        };
        out.push_restore(&subscribe).unwrap();
        // Only the restoring frame goes before the buffer opens.
        assert!(matches!(
            &frames(&out).await[..],
            [ClientFrame::Subscribe { .. }]
        ));
        out.open();
        let seqs: Vec<_> = frames(&out)
            .await
            .into_iter()
            .map(|f| match f {
                ClientFrame::Publish { attributes, .. } => attributes,
                other => panic!("{other:?}"),
            })
            .collect();
        // Those kept are the first ones made offline, in order.
        assert_eq!(seqs, [event(1), event(2), event(3)]);
        // Open again: requests are queued.
        out.send(&flush).await.unwrap();
    }
}
