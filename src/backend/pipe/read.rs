//! Reading a connection's replies: as much as the socket has (a bounded number of reads per
//! wake-up), each complete reply handed to the oldest request in flight.

use std::collections::VecDeque;
use std::io;

use bytes::{Buf, BytesMut};
use tokio::time::Instant;

use super::{End, InFlight, PipeInfo, READ_CHUNK, READS_PER_WAKE};
use crate::backend::BackendError;
use crate::net::{Stream, read_once};
use crate::protocol::reply::{ReplyScanner, is_push};

/// Reads what the socket has and hands every complete reply to its request, in order.
/// Returns whether anything was read.
pub(super) fn read_replies(
    info: &PipeInfo<'_>,
    sock: &Stream,
    rbuf: &mut BytesMut,
    scanner: &mut ReplyScanner,
    inflight: &mut VecDeque<InFlight>,
    partial: &mut usize,
    settled: &mut usize,
) -> Result<bool, End> {
    let mut any = false;
    // A bounded number of reads per wake-up: a backend streaming a large reply goes back
    // through the select (and tokio's cooperative budget) instead of holding the worker.
    for _ in 0..READS_PER_WAKE {
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            // Grow with the buffered partial reply, so a large reply is copied O(log n) times.
            rbuf.reserve(READ_CHUNK.max(rbuf.len()));
        }
        let spare = rbuf.capacity() - rbuf.len();
        match read_once(sock, rbuf) {
            Ok(0) => return Err(End::Failed(BackendError::Closed)),
            Ok(n) => {
                any = true;
                deliver(info, rbuf, scanner, inflight, partial, settled)?;
                if n < spare {
                    return Ok(any);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(any),
            Err(e) => return Err(End::Failed(e.into())),
        }
    }
    Ok(any)
}

fn deliver(
    info: &PipeInfo<'_>,
    rbuf: &mut BytesMut,
    scanner: &mut ReplyScanner,
    inflight: &mut VecDeque<InFlight>,
    partial: &mut usize,
    settled: &mut usize,
) -> Result<(), End> {
    let now = Instant::now();
    let mut done = 0;
    let metrics = &info.spec.metrics;
    let result = loop {
        let len = match scanner.scan(&rbuf[*partial..]) {
            Ok(Some(len)) => len,
            Ok(None) => break Ok(()),
            Err(e) => break Err(End::Failed(e.into())),
        };
        if is_push(&rbuf[*partial..]) {
            // Out-of-band data no request asked for (shardis enables no tracking): drop it.
            drop_range(rbuf, *partial, len);
            continue;
        }
        let Some(head) = inflight.front_mut() else {
            break Err(End::Failed(BackendError::Unexpected));
        };
        head.left -= 1;
        if head.left > 0 {
            *partial += len;
            continue;
        }
        let frame_len = *partial + len;
        *partial = 0;
        let Some(pending) = inflight.pop_front() else {
            break Ok(());
        };
        *settled = settled.saturating_sub(1);
        match pending.reply {
            Some(to) => {
                metrics.record(now.saturating_duration_since(pending.sent));
                to.send(rbuf.split_to(frame_len).freeze());
            }
            // Answered already (timed out): the late reply is dropped.
            None => rbuf.advance(frame_len),
        }
        done += 1;
    };
    if done > 0 {
        info.spec.state.sub_inflight(done);
        info.spec.succeeded();
    }
    result
}

/// Removes `len` bytes at `at` from the buffer (a push in the middle of a multi-reply request).
fn drop_range(rbuf: &mut BytesMut, at: usize, len: usize) {
    if at == 0 {
        rbuf.advance(len);
    } else {
        let mut tail = rbuf.split_off(at);
        tail.advance(len);
        rbuf.extend_from_slice(&tail);
    }
}
