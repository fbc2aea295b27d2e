//! A session's queue of commands: sequence numbers, the bounds on what may be in flight, and
//! moving complete replies, in order, to the output (honouring CLIENT REPLY).

use bytes::{Bytes, BytesMut};

use super::pending::Pending;
use super::{ABANDONED, MAX_OUTPUT, ReplyMode, Session};

impl Session {
    /// Moves the replies that are complete, in order, to the output buffer and returns it;
    /// the caller writes from its front.
    pub fn output(&mut self) -> &mut BytesMut {
        self.move_ready();
        &mut self.out.wbuf
    }

    /// Sequence number the next command gets.
    pub(super) fn next_seq(&self) -> u64 {
        self.queue.base_seq + self.queue.pending.len() as u64
    }

    /// True while another command may be sent: no blocking command waits, fewer than
    /// `max_pipeline` in the queue, less than [`MAX_OUTPUT`] waiting to be written (more during an
    /// output overdraft, see [`super::budget`]), and the
    /// replies expected for the commands in flight within [`MAX_OUTPUT`]. With nothing in
    /// flight one command may always go.
    pub(super) fn may_send(&self) -> bool {
        self.modes.blocked.is_none()
            && self.queue.pending.len() < self.table.settings.max_pipeline
            && self.out.wbuf.len() < self.output_bound()
            && self
                .queue
                .awaiting
                .saturating_mul(self.queue.reply_estimate)
                < MAX_OUTPUT
    }

    /// Queues a command that was sent to a backend; [`Session::on_reply`] completes it.
    pub(super) fn push_waiting(&mut self, entry: Pending) {
        self.queue.awaiting += 1;
        self.note_reply_mode();
        self.queue.pending.push_back(entry);
    }

    /// Queues a reply that is already complete (local answers, errors).
    pub(super) fn push_ready(&mut self, reply: Bytes) {
        self.note_reply_mode();
        self.queue.held += reply.len();
        self.queue.pending.push_back(Pending::Ready(reply));
    }

    /// Applies CLIENT REPLY OFF / SKIP to the command being queued.
    #[inline]
    pub(super) fn note_reply_mode(&mut self) {
        match self.out.reply_mode {
            ReplyMode::On => {}
            ReplyMode::Off => self.out.silent.push_back(self.next_seq()),
            ReplyMode::Skip => {
                self.out.silent.push_back(self.next_seq());
                self.out.reply_mode = ReplyMode::On;
            }
        }
    }

    /// Moves complete replies at the front of the queue to the write buffer.
    pub(super) fn move_ready(&mut self) {
        while self.out.wbuf.len() < self.move_bound() {
            let frame = match self.queue.pending.front() {
                Some(Pending::Ready(_) | Pending::Push(_)) => self.queue.pending.pop_front(),
                _ => break,
            };
            let silent = self.out.silent.front() == Some(&self.queue.base_seq);
            if silent {
                self.out.silent.pop_front();
            }
            self.queue.base_seq += 1;
            match frame {
                Some(Pending::Ready(reply)) => {
                    self.queue.held = self.queue.held.saturating_sub(reply.len());
                    if matches!(reply.first(), Some(b'-' | b'!')) {
                        self.ctx.state.errors.count(&reply);
                    }
                    if !silent {
                        self.out.wbuf.extend_from_slice(&reply);
                    }
                }
                Some(Pending::Push(message)) => {
                    self.out.wbuf.extend_from_slice(&message);
                    if let Some(subs) = &self.modes.subs {
                        subs.me.written(message.len());
                    }
                }
                _ => {}
            }
        }
        if !self.holds.is_empty() {
            // The writes whose replies have left hold the near cache no longer.
            self.holds.release_before(self.queue.base_seq);
        }
    }

    /// Answers every command still waiting for a backend with [`ABANDONED`] (finished as
    /// failed, like any other error) and moves what is ready to the output, for a shutdown that
    /// cannot wait longer.
    pub fn abandon(&mut self) {
        self.closing = true;
        for i in 0..self.queue.pending.len() {
            let (cmd, start, backend) = match &self.queue.pending[i] {
                Pending::Ready(_) | Pending::Push(_) | Pending::Subscribe { .. } => continue,
                Pending::Single {
                    cmd, start, sent, ..
                } => (*cmd, *start, Some(sent.backend.clone())),
                Pending::Fanout(fanout) => (fanout.cmd, fanout.start, None),
                Pending::Delayed { cmd, start } => (*cmd, *start, None),
            };
            self.finish(cmd, start, false, backend.as_deref());
            // Answered already: a redirection of its reply, if one comes, is not followed.
            self.queue.pending[i] = Pending::Ready(Bytes::from_static(ABANDONED));
        }
        self.queue.awaiting = 0;
        self.modes.blocked = None;
        self.move_ready();
    }
}
