//! The connection's byte stream: plain or TLS, optionally with COMPRESS=DEFLATE on top. It
//! is upgraded in place (plain → TLS on STARTTLS, then deflate on COMPRESS), so the driver
//! and imap-next's `Server` above it carry on over the new layer.

use std::io;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use postern_daemon::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// Most decompressed bytes handed out per read (bounds what a deflate bomb can produce).
const INFLATE_CHUNK: usize = 64 * 1024;

/// Plain/TLS stream plus optional deflate.
pub(crate) struct Transport {
    stream: Option<Stream>,
    deflate: Option<Deflate>,
    buf: Vec<u8>,
}

struct Deflate {
    comp: Compress,
    decomp: Decompress,
    /// Compressed input not yet inflated.
    pending: Vec<u8>,
}

impl Transport {
    pub(crate) fn new(stream: Stream) -> Self {
        Self {
            stream: Some(stream),
            deflate: None,
            buf: vec![0; READ_CHUNK],
        }
    }

    /// True if the stream is TLS.
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self.stream, Some(Stream::Tls(_)))
    }

    /// STARTTLS: runs the TLS handshake over the plain stream, within `timeout`, and goes on
    /// over TLS. Nothing read before is kept here (the caller drops what it buffered). On
    /// failure the stream is gone (the connection closes). Refused on a TLS or compressed
    /// stream.
    pub(crate) async fn start_tls(
        &mut self,
        acceptor: tokio_rustls::TlsAcceptor,
        timeout: Duration,
    ) -> io::Result<()> {
        if self.deflate.is_some() {
            return Err(io::Error::other("STARTTLS under COMPRESS"));
        }
        let Some(Stream::Plain(tcp)) = self.stream.take() else {
            return Err(io::Error::other("STARTTLS on a stream that is not plain"));
        };
        let tls = tokio::time::timeout(timeout, acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        self.stream = Some(Stream::Tls(Box::new(tls)));
        Ok(())
    }

    /// Starts raw deflate in both directions (RFC 4978).
    pub(crate) fn start_deflate(&mut self) {
        self.deflate = Some(Deflate {
            comp: Compress::new(Compression::fast(), false),
            decomp: Decompress::new(false),
            pending: Vec::new(),
        });
    }

    /// Reads some bytes (decompressed if needed). Empty means end of stream. Cancel-safe:
    /// the only await is the socket read.
    pub(crate) async fn read(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(d) = &mut self.deflate
                && !d.pending.is_empty()
            {
                let out = inflate(d)?;
                if !out.is_empty() {
                    return Ok(out);
                }
            }
            let Some(stream) = self.stream.as_mut() else {
                return Ok(Vec::new());
            };
            let n = stream.read(&mut self.buf).await?;
            if n == 0 {
                return Ok(Vec::new());
            }
            match &mut self.deflate {
                None => return Ok(self.buf[..n].to_vec()),
                Some(d) => d.pending.extend_from_slice(&self.buf[..n]),
            }
        }
    }

    /// Writes everything and flushes.
    pub(crate) async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        match &mut self.deflate {
            None => stream.write_all(data).await?,
            Some(d) => {
                let out = deflate(&mut d.comp, data)?;
                stream.write_all(&out).await?;
            }
        }
        stream.flush().await
    }

    /// The stream itself, for a proxied session's relay (`None` under COMPRESS, which is
    /// only possible after a login here).
    pub(crate) fn into_stream(self) -> Option<Stream> {
        if self.deflate.is_some() {
            return None;
        }
        self.stream
    }

    /// Closes the write side.
    pub(crate) async fn shutdown(&mut self) {
        if let Some(s) = self.stream.as_mut() {
            let _ = s.shutdown().await;
        }
    }
}

fn inflate(d: &mut Deflate) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(INFLATE_CHUNK);
    let before_in = d.decomp.total_in();
    let status = d
        .decomp
        .decompress_vec(&d.pending, &mut out, FlushDecompress::Sync)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let used = usize::try_from(d.decomp.total_in() - before_in).unwrap_or(usize::MAX);
    d.pending.drain(..used.min(d.pending.len()));
    if status == Status::StreamEnd {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(out)
}

fn deflate(comp: &mut Compress, mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.len().max(1024));
        }
        let before = comp.total_in();
        comp.compress_vec(data, &mut out, FlushCompress::Sync)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let used = usize::try_from(comp.total_in() - before).unwrap_or(data.len());
        data = &data[used.min(data.len())..];
        // Done once all input is consumed and the sync flush had room to finish.
        if data.is_empty() && out.capacity() - out.len() >= 64 {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut c = Compress::new(Compression::fast(), false);
        let big: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let z1 = deflate(&mut c, b"* OK hello\r\n").unwrap();
        let z2 = deflate(&mut c, &big).unwrap();
        let mut d = Deflate {
            comp: Compress::new(Compression::fast(), false),
            decomp: Decompress::new(false),
            pending: [z1, z2].concat(),
        };
        let mut all = Vec::new();
        loop {
            let o = inflate(&mut d).unwrap();
            if o.is_empty() {
                break;
            }
            assert!(o.len() <= INFLATE_CHUNK);
            all.extend(o);
        }
        assert_eq!(&all[..12], b"* OK hello\r\n");
        assert_eq!(&all[12..], &big[..]);
    }
}
