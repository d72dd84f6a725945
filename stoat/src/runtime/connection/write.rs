//! Writing and the outbox: the bound on output queued for one client,
//! pending output flushed first, a batch's responses written with one
//! syscall (what the socket does not take moves into the connection), and
//! what the loop does next.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;

use super::{Connection, Next, Shared, ThreadCtx};
use crate::runtime::file_body::FILE_SLICE;
use crate::runtime::observe::Observe;
use crate::runtime::outbox::Outbox;
use crate::sys::{sendfile, socket};

impl Connection {
    /// Whether the bytes queued for the client (this batch's responses in
    /// `ctx.out` and output left from earlier) are over
    /// `http.max_pending_output`: then no further pipelined request is
    /// parsed and nothing more is read until the client reads.
    #[inline]
    pub(super) fn output_full(&self, shared: &Shared, ctx: &mut ThreadCtx) -> bool {
        let queued = ctx.out.pending() + self.output.as_ref().map_or(0, |o| o.pending());
        if queued <= shared.max_output {
            return false;
        }
        record_peak(queued, shared, ctx);
        true
    }

    /// Writes output left from an earlier batch.
    #[inline]
    pub(super) fn flush_pending(&mut self, ctx: &mut ThreadCtx) -> io::Result<()> {
        if self.output.is_none() {
            return Ok(());
        }
        self.flush_left(ctx)
    }

    /// [`Connection::flush_pending`] when there is output left.
    #[inline(never)]
    fn flush_left(&mut self, ctx: &mut ThreadCtx) -> io::Result<()> {
        if let Some(out) = &mut self.output {
            if write_out(&self.fd, out, &mut ctx.obs)? {
                self.output = None;
                self.proto.set_write_pending(false, ctx.now);
            } else {
                self.proto.set_write_pending(true, ctx.now);
            }
        }
        Ok(())
    }

    /// Writes this batch's responses (in `ctx.out`) with one syscall; what
    /// the socket does not take moves into the connection.
    pub(super) fn flush_new(&mut self, ctx: &mut ThreadCtx) -> io::Result<()> {
        if let Some(out) = &mut self.output {
            // Responses were appended behind older pending output.
            if write_out(&self.fd, out, &mut ctx.obs)? {
                self.output = None;
                self.proto.set_write_pending(false, ctx.now);
            }
            return Ok(());
        }
        if ctx.out.is_empty() {
            return Ok(());
        }
        if !write_out(&self.fd, &mut ctx.out, &mut ctx.obs)? {
            self.output = Some(Box::new(std::mem::take(&mut ctx.out)));
            self.proto.set_write_pending(true, ctx.now);
        }
        Ok(())
    }

    /// Decides what the loop does, and gives the buffer back if it is empty.
    #[inline]
    pub(super) fn settle(&mut self, shared: &Shared, ctx: &mut ThreadCtx, next: Next) -> Next {
        if self.proto.is_closing() && self.output.is_none() {
            return Next::Close;
        }
        if let Some(input) = &self.input {
            if input.start == input.end && input.body_start == 0 {
                if let Some(input) = self.input.take() {
                    shared.pool.give(&mut ctx.local, input.mem);
                }
            }
        }
        match next {
            Next::WaitBuffer if self.output.is_none() => Next::WaitBuffer,
            _ => Next::Keep {
                want_write: self.output.is_some(),
            },
        }
    }
}

/// Writes as much of `out` as the socket takes. `Ok(true)`: all written.
/// The common case (one run of bytes, taken whole) is one `write` inline.
#[inline]
pub(super) fn write_out(fd: &OwnedFd, out: &mut Outbox, obs: &mut Observe) -> io::Result<bool> {
    if let Some(bytes) = out.single() {
        if bytes.is_empty() {
            return Ok(true);
        }
        match socket::write(fd.as_fd(), bytes) {
            Ok(n) => {
                if obs.on() {
                    obs.written(n);
                }
                out.advance(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
        if out.is_empty() {
            return Ok(true);
        }
    }
    write_rest(fd, out, obs)
}

/// [`write_out`] past its first `write`: file bodies, vectored writes,
/// and what a short write left.
#[inline(never)]
fn write_rest(fd: &OwnedFd, out: &mut Outbox, obs: &mut Observe) -> io::Result<bool> {
    while !out.is_empty() {
        if let Some((file, mut offset, left)) = out.front_file() {
            // A file body's turn (`file_body.rs`): sendfile, one slice per
            // call, while the socket takes it.
            match sendfile::sendfile(fd, file, &mut offset, left.min(FILE_SLICE)) {
                Ok(0) => {
                    // The file shrank: the promised length cannot be kept.
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shorter than its response's Content-Length",
                    ));
                }
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
            continue;
        }
        let r = match out.single() {
            Some(bytes) => socket::write(fd.as_fd(), bytes),
            None => {
                let mut iov = Vec::new();
                out.slices(&mut iov);
                socket::writev(fd.as_fd(), &iov)
            }
        };
        match r {
            Ok(n) => {
                if obs.on() {
                    obs.written(n);
                }
                out.advance(n)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Where output goes now: behind output left from earlier (`pending`), or
/// into the thread's batch (`batch`) when nothing is pending.
#[inline]
pub(super) fn outbox<'a>(
    pending: &'a mut Option<Box<Outbox>>,
    batch: &'a mut Outbox,
) -> &'a mut Outbox {
    match pending {
        Some(o) => o,
        None => batch,
    }
}

/// Records bytes queued over the limit for `Stats::output_peak` (the
/// shared maximum is touched only when this thread's own is passed).
#[cold]
fn record_peak(queued: usize, shared: &Shared, ctx: &mut ThreadCtx) {
    if queued > ctx.output_peak {
        ctx.output_peak = queued;
        shared.output_peak.fetch_max(queued, Ordering::Relaxed);
    }
}
