//! Big-endian field readers: over a byte slice, and over a stream that records what it read.

use std::io::Read;

use crate::error::{Error, Result};

/// Reads fields from a byte slice; every read fails cleanly at the end of the slice.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], ()> {
        if self.buf.len() < n {
            return Err(());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, ()> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn string_u16(&mut self) -> Result<String, ()> {
        let len = self.u16()?;
        let b = self.bytes(usize::from(len))?;
        String::from_utf8(b.to_vec()).map_err(|_| ())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// Reads fields from a stream. An end of stream inside a field is [`Error::Truncated`] with the
/// given context. Everything read is appended to `record` while recording is on, so that the
/// header bytes can be authenticated and signed exactly as they were received.
pub(crate) struct Input<R> {
    inner: R,
    record: Option<Vec<u8>>,
}

impl<R: Read> Input<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            record: None,
        }
    }

    /// The underlying stream (for seeking; nothing is recorded).
    pub(crate) fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    pub(crate) fn start_recording(&mut self) {
        self.record = Some(Vec::new());
    }

    pub(crate) fn take_recording(&mut self) -> Vec<u8> {
        self.record.take().unwrap_or_default()
    }

    /// Reads exactly `n` bytes, growing the buffer only as bytes arrive, by doubling from 64 KiB
    /// and never past `n` (a lying length field cannot make us allocate more than about twice
    /// what is actually sent).
    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while out.len() < n {
            let filled = out.len();
            let next = filled.saturating_mul(2).max(1 << 16).min(n);
            out.reserve_exact(next - filled);
            out.resize(next, 0);
            if crate::esdk::stream::read_full(&mut self.inner, &mut out[filled..])? != next - filled
            {
                return Err(Error::Truncated(what));
            }
        }
        if let Some(rec) = &mut self.record {
            rec.extend_from_slice(&out);
        }
        Ok(out)
    }

    /// Reads into `buf` completely.
    pub(crate) fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => return Err(Error::Truncated(what)),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(rec) = &mut self.record {
            rec.extend_from_slice(buf);
        }
        Ok(())
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// True if the stream is at its end; otherwise one byte was consumed (used only to detect
    /// trailing data after the message).
    pub(crate) fn at_end(&mut self) -> Result<bool> {
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(true),
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}
