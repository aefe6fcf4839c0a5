//! A fixed-size read buffer over any `Read`: peeking for sniffing, zero-copy lines for JSONL, and a
//! guarded `Read` for the CSV parser.
//!
//! Memory is bounded by the buffer: it holds one record of up to [`MAX_RECORD_BYTES`] plus read-ahead,
//! and a longer line is skipped through, never accumulated.

use std::io::{self, Read};

use crate::MAX_RECORD_BYTES;

/// Room for one maximal record plus a read-ahead window.
const BUF_CAP: usize = MAX_RECORD_BYTES + 256 * 1024;

pub(crate) struct Source<R> {
    inner: R,
    buf: Box<[u8]>,
    pub(crate) pos: usize,
    pub(crate) end: usize,
    eof: bool,
    /// Where the next newline search starts, so a partly read line is not searched twice.
    scan: usize,
    /// Bytes handed out through `Read` since the last `reset_guard`, for the CSV record limit.
    guard_count: usize,
    pub(crate) guard_tripped: bool,
}

/// One JSONL line, or a line that was too long to keep.
pub(crate) enum Line {
    /// Where the line lies in [`Source::buf`], without its `\n` or `\r\n`. An index range rather than a
    /// slice so callers can look at it and still use the source afterwards.
    Text(std::ops::Range<usize>),
    /// A line over [`MAX_RECORD_BYTES`], already skipped.
    TooLong,
}

impl<R: Read> Source<R> {
    pub(crate) fn new(inner: R) -> Self {
        Source {
            inner,
            buf: vec![0; BUF_CAP].into_boxed_slice(),
            pos: 0,
            end: 0,
            eof: false,
            scan: 0,
            guard_count: 0,
            guard_tripped: false,
        }
    }

    pub(crate) fn available(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    pub(crate) fn buf(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn is_eof(&self) -> bool {
        self.eof
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.pos += n;
        self.scan = self.scan.max(self.pos);
    }

    /// Reads until at least `n` bytes are available or the input ends.
    pub(crate) fn fill_to(&mut self, n: usize) -> io::Result<()> {
        while self.end - self.pos < n && !self.eof {
            self.read_more()?;
        }
        Ok(())
    }

    /// Reads once more into the buffer, first moving unread bytes to the front if there is no room.
    /// Returns how far the data moved, so callers holding indices can adjust them.
    pub(crate) fn read_more(&mut self) -> io::Result<usize> {
        let shift = if self.end == self.buf.len() { self.compact() } else { 0 };
        // Callers only ask for more while less than one maximal record is buffered, so there is room;
        // a read into an empty slice would return 0 and look like end of input.
        debug_assert!(self.end < self.buf.len());
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(shift);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(shift);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn compact(&mut self) -> usize {
        let shift = self.pos;
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= shift;
        self.scan -= shift;
        self.pos = 0;
        shift
    }

    /// Drops everything buffered (used while skipping through an over-long record).
    pub(crate) fn discard_all(&mut self) {
        self.pos = 0;
        self.end = 0;
        self.scan = 0;
    }

    /// The next line, borrowed from the buffer; `None` at the end of input.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<Line>> {
        let (start, stop) = loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.scan..self.end]) {
                let nl = self.scan + i;
                let start = self.pos;
                self.pos = nl + 1;
                self.scan = self.pos;
                if nl - start > MAX_RECORD_BYTES {
                    return Ok(Some(Line::TooLong));
                }
                break (start, nl);
            }
            if self.eof {
                if self.pos == self.end {
                    return Ok(None);
                }
                if self.end - self.pos > MAX_RECORD_BYTES {
                    self.pos = self.end;
                    self.scan = self.end;
                    return Ok(Some(Line::TooLong));
                }
                let start = self.pos;
                self.pos = self.end;
                self.scan = self.end;
                break (start, self.end);
            }
            if self.end - self.pos > MAX_RECORD_BYTES {
                self.skip_rest_of_line()?;
                return Ok(Some(Line::TooLong));
            }
            self.scan = self.end;
            self.read_more()?;
        };
        let stop = if stop > start && self.buf[stop - 1] == b'\r' { stop - 1 } else { stop };
        Ok(Some(Line::Text(start..stop)))
    }

    fn skip_rest_of_line(&mut self) -> io::Result<()> {
        loop {
            self.discard_all();
            self.read_more()?;
            if let Some(i) = memchr::memchr(b'\n', &self.buf[..self.end]) {
                self.pos = i + 1;
                self.scan = self.pos;
                return Ok(());
            }
            if self.eof {
                self.pos = self.end;
                self.scan = self.end;
                return Ok(());
            }
        }
    }

    /// Starts a new CSV record's byte budget.
    pub(crate) fn reset_guard(&mut self) {
        self.guard_count = 0;
    }
}

/// Hands buffered bytes out first, then reads through; fails once one record's budget is exceeded,
/// because the CSV parser would otherwise grow its record buffer without bound on a huge field.
impl<R: Read> Read for Source<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // Slack for the CSV reader's own read-ahead, which is counted before the record it belongs to.
        if self.guard_count > MAX_RECORD_BYTES + 64 * 1024 {
            self.guard_tripped = true;
            return Err(io::Error::other("CSV record over the size limit"));
        }
        if self.pos == self.end {
            if self.eof {
                return Ok(0);
            }
            self.discard_all();
            self.read_more()?;
        }
        let n = out.len().min(self.end - self.pos).min(64 * 1024);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.consume(n);
        self.guard_count += n;
        Ok(n)
    }
}
