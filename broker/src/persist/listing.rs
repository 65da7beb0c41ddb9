//! Queue listings split into frames that fit the client's frame limit.
//!
//! A `queue ls` answer holds every queue and dead-letter queue of the broker; with thousands
//! of queues (each filter up to 16 KiB) it would not fit in one frame, and the control
//! stream's writer would fail on it. The answer goes out as several [`ServerFrame::Queues`],
//! every one but the last with `more` set; the SDK puts them back together.

use palio_protocol::{QueueInfo, ServerFrame, encoded_len};

/// The longest MessagePack array header (`array 32`): a chunk's header is at most this long
/// whatever its length.
const ARRAY_HEADER_MAX: usize = 5;

/// The frames answering `request` with `queues`, in order: each at most `max_frame` bytes
/// encoded, unless it holds a single queue whose entry alone is longer (a filter close to the
/// frame limit), which then goes alone. There is always at least one frame; the last has
/// `more == false`.
pub(super) fn queue_frames(
    request: u64,
    queues: Vec<QueueInfo>,
    max_frame: usize,
) -> Vec<ServerFrame> {
    // The frame without its entries, with room for the largest array header.
    let empty = ServerFrame::Queues {
        request,
        queues: Vec::new(),
        more: true,
    };
    let overhead = encoded_len(&empty).map_or(0, |n| n.saturating_sub(1)) + ARRAY_HEADER_MAX;
    let mut frames = Vec::new();
    let mut chunk = Vec::new();
    let mut size = overhead;
    for q in queues {
        // Encoding a `QueueInfo` cannot fail; were it to, the entry goes in a frame of its own.
        let len = encoded_len(&q).unwrap_or(max_frame);
        if !chunk.is_empty() && size.saturating_add(len) > max_frame {
            frames.push(ServerFrame::Queues {
                request,
                queues: std::mem::take(&mut chunk),
                more: true,
            });
            size = overhead;
        }
        size = size.saturating_add(len);
        chunk.push(q);
    }
    frames.push(ServerFrame::Queues {
        request,
        queues: chunk,
        more: false,
    });
    frames
}

#[cfg(test)]
mod tests {
    use palio_protocol::{DEFAULT_MAX_FRAME, FRAME_HEADROOM, encode};

    use super::*;

    fn info(i: usize, filter_len: usize) -> QueueInfo {
        QueueInfo {
            name: format!("queue-{i:05}"),
            filter: format!("x = '{}'", "f".repeat(filter_len)),
            pending: u64::MAX - i as u64,
            unacked: i as u64,
            dead_lettered: 0,
            consumers: u32::MAX,
            ack_wait_ms: 30_000,
            max_deliveries: 5,
            owner: format!("principal-{i}"),
            bytes: u64::MAX,
            max_messages: u64::MAX,
            max_bytes: u64::MAX,
            max_age_ms: u64::MAX,
            discard: palio_protocol::Discard::New,
        }
    }

    /// Checks the frames' shape and returns their queues, in order, and their sizes.
    fn reassemble(request: u64, frames: &[ServerFrame]) -> (Vec<QueueInfo>, Vec<usize>) {
        let (mut queues, mut sizes) = (Vec::new(), Vec::new());
        for (i, f) in frames.iter().enumerate() {
            let ServerFrame::Queues {
                request: r,
                queues: q,
                more,
            } = f
            else {
                panic!("not a queues frame: {f:?}");
            };
            assert_eq!(*r, request);
            assert_eq!(
                *more,
                i + 1 < frames.len(),
                "only the last frame ends the answer"
            );
            queues.extend(q.iter().cloned());
            sizes.push(encode(f).unwrap().len());
        }
        (queues, sizes)
    }

    #[test]
    fn ten_thousand_queues_with_long_filters_fit_in_frames_under_the_limit() {
        // Two lanes (queue and dead-letter queue) per queue, filters of 1–4 KiB.
        let queues: Vec<QueueInfo> = (0..20_000)
            .map(|i| info(i, 1024 + (i * 37) % 3072))
            .collect();
        let frames = queue_frames(u64::MAX, queues.clone(), DEFAULT_MAX_FRAME);
        let (back, sizes) = reassemble(u64::MAX, &frames);
        assert_eq!(back, queues, "every queue, once, in order");
        assert!(frames.len() > 40, "{} frames", frames.len());
        assert!(
            sizes.iter().all(|&s| s <= DEFAULT_MAX_FRAME),
            "largest frame {:?}",
            sizes.iter().max()
        );
        // Chunks are filled, not cut early: each but the last would overflow with the next
        // entry.
        let full = sizes[..sizes.len() - 1].iter().min().copied().unwrap_or(0);
        assert!(
            full > DEFAULT_MAX_FRAME - 8 * 1024,
            "a chunk of only {full} bytes"
        );
    }

    #[test]
    fn a_queue_longer_than_the_limit_goes_alone_within_the_headroom() {
        let max = 4096;
        let queues = vec![info(0, 10), info(1, 2 * max), info(2, 10), info(3, 10)];
        let frames = queue_frames(7, queues.clone(), max);
        let (back, sizes) = reassemble(7, &frames);
        assert_eq!(back, queues);
        assert_eq!(frames.len(), 3, "{frames:?}");
        assert!(sizes[1] > max && sizes[1] <= max + FRAME_HEADROOM);
        assert!(sizes[0] <= max && sizes[2] <= max);
    }

    #[test]
    fn no_queues_is_one_empty_last_frame() {
        assert_eq!(
            queue_frames(1, Vec::new(), 1024),
            vec![ServerFrame::Queues {
                request: 1,
                queues: Vec::new(),
                more: false
            }]
        );
    }
}
