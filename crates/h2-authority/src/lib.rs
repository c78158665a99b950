//! Repairs empty or invalid HTTP/2 `:authority` pseudo-headers before hyper/h2
//! sees them.
//!
//! Tyk gateways older than 5.8.3 dial gRPC plugins with grpc-go's
//! `grpc.Dial("")` and a custom dialer, so every request carries an *empty*
//! `:authority`; Python grpcio sends the Unix socket path (e.g.
//! `/tmp/plugin.sock`). The `h2` crate resets such streams with
//! `PROTOCOL_ERROR` ("malformed authority") before tonic sees them, and it has
//! no option to relax that check.
//!
//! [`AuthorityRepair`] wraps an accepted connection and rewrites the client's
//! byte stream:
//!
//! * It parses the connection preface and frame headers, and HPACK-decodes
//!   the first header block of the connection.
//! * If that block's `:authority` is absent or valid, the block is forwarded
//!   unchanged and the connection becomes a zero-cost pass-through: every
//!   later `poll_read` goes straight to the inner stream.
//! * Otherwise the connection switches to *repair mode*: every header block is
//!   decoded (tracking the client's HPACK dynamic table) and re-encoded with
//!   literal representations that never touch the server's dynamic table,
//!   without the invalid `:authority`. h2 then builds a path-only URI, which
//!   tonic routes normally. All non-header frames are forwarded byte for byte.
//!
//! Anything unexpected (not HTTP/2, a header block over 1 MiB, an HPACK error)
//! makes the adapter forward the raw bytes and step aside, so h2 reports the
//! error it would have reported anyway. Writes are never touched.
//!
//! ```no_run
//! # #[cfg(feature = "tonic")]
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! use h2_authority::AuthorityRepair;
//! use tokio_stream::{StreamExt, wrappers::TcpListenerStream};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:50051").await?;
//! let incoming = TcpListenerStream::new(listener).map(|conn| conn.map(AuthorityRepair::new));
//! let (_reporter, health) = tonic_health::server::health_reporter();
//! tonic::transport::Server::builder()
//!     .add_service(health)
//!     .serve_with_incoming(incoming)
//!     .await?;
//! # Ok(()) }
//! ```

mod hpack;
mod huffman;
mod huffman_table;
mod rewrite;
#[cfg(feature = "test-client")]
pub mod testing;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use rewrite::{BlockOutcome, Rewriter, Verdict};

/// How much is read from the inner stream at once while inspecting or repairing.
const READ_CHUNK: usize = 16 * 1024;

/// Cloneable handle on counters shared by many connections (for metrics).
///
/// [`AuthorityRepair::new`] counts into [`RepairStats::global`];
/// [`AuthorityRepair::with_stats`] into the handle you pass.
#[derive(Debug, Clone, Default)]
pub struct RepairStats(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    connections_repaired: AtomicU64,
    header_blocks_rewritten: AtomicU64,
    fallbacks: AtomicU64,
}

static GLOBAL_STATS: LazyLock<RepairStats> = LazyLock::new(RepairStats::default);
static WARNED: AtomicBool = AtomicBool::new(false);

impl RepairStats {
    /// A fresh set of counters, all zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide counters used by [`AuthorityRepair::new`].
    pub fn global() -> Self {
        GLOBAL_STATS.clone()
    }

    /// Connections switched to repair mode (their first header block had an
    /// empty or invalid `:authority`).
    pub fn connections_repaired(&self) -> u64 {
        self.0.connections_repaired.load(Ordering::Relaxed)
    }

    /// Header blocks re-encoded on repaired connections (about one per
    /// request plus one per trailers block).
    pub fn header_blocks_rewritten(&self) -> u64 {
        self.0.header_blocks_rewritten.load(Ordering::Relaxed)
    }

    /// Connections on which the adapter gave up and forwarded raw bytes
    /// because of something it could not parse (h2 reports the error).
    pub fn fallbacks(&self) -> u64 {
        self.0.fallbacks.load(Ordering::Relaxed)
    }
}

/// What an [`AuthorityRepair`] connection is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairMode {
    /// Waiting for the first header block.
    Detecting,
    /// Forwarding everything unchanged (the first block was fine, or the
    /// adapter stepped aside after an error).
    PassThrough,
    /// Re-encoding every header block without the invalid `:authority`.
    Repairing,
}

/// Read-side state while not in pass-through.
#[derive(Debug)]
struct Active {
    rewriter: Rewriter,
    /// Bytes ready for the reader, from `pos`.
    out: Vec<u8>,
    pos: usize,
    scratch: Box<[u8]>,
    eof: bool,
    /// Blocks already added to the shared counter.
    counted_blocks: u64,
}

/// An I/O adapter between an accepted socket and hyper/tonic that repairs
/// empty or invalid HTTP/2 `:authority` pseudo-headers. See the crate docs.
///
/// Reads are rewritten (only header blocks, only when needed); writes are a
/// pure pass-through.
#[derive(Debug)]
pub struct AuthorityRepair<S> {
    inner: S,
    /// `None` = pass-through.
    active: Option<Box<Active>>,
    repaired: bool,
    fell_back: bool,
    stats: RepairStats,
}

impl<S> AuthorityRepair<S> {
    /// Wraps an accepted connection, counting into [`RepairStats::global`].
    pub fn new(inner: S) -> Self {
        Self::with_stats(inner, RepairStats::global())
    }

    /// Wraps an accepted connection, counting into `stats`.
    pub fn with_stats(inner: S, stats: RepairStats) -> Self {
        Self {
            inner,
            active: Some(Box::new(Active {
                rewriter: Rewriter::new(),
                out: Vec::new(),
                pos: 0,
                scratch: vec![0; READ_CHUNK].into_boxed_slice(),
                eof: false,
                counted_blocks: 0,
            })),
            repaired: false,
            fell_back: false,
            stats,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably. Reading from it directly bypasses (and
    /// confuses) the rewriter.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the stream. Bytes already read from it but not yet returned
    /// by this adapter are lost.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The counters this connection reports to.
    pub fn stats(&self) -> &RepairStats {
        &self.stats
    }

    /// What the connection is doing now.
    pub fn mode(&self) -> RepairMode {
        match &self.active {
            // The rewriter is dropped for pass-through, or at EOF.
            None if self.repaired && !self.fell_back => RepairMode::Repairing,
            None => RepairMode::PassThrough,
            Some(a) => match a.rewriter.verdict() {
                Verdict::Undecided => RepairMode::Detecting,
                Verdict::PassThrough => RepairMode::PassThrough,
                Verdict::Repair => RepairMode::Repairing,
            },
        }
    }

    /// True if this connection was switched to repair mode at some point.
    pub fn was_repaired(&self) -> bool {
        self.repaired
    }
}

/// Logs and counts what the rewriter reported after a `feed`.
fn report(active: &mut Active, repaired: &mut bool, fell_back: &mut bool, stats: &RepairStats) {
    let blocks = active.rewriter.blocks_rewritten;
    if blocks != active.counted_blocks {
        stats
            .0
            .header_blocks_rewritten
            .fetch_add(blocks - active.counted_blocks, Ordering::Relaxed);
        active.counted_blocks = blocks;
    }
    match active.rewriter.take_outcome() {
        None => {}
        Some(BlockOutcome::StartedRepair(authority)) => {
            *repaired = true;
            stats.0.connections_repaired.fetch_add(1, Ordering::Relaxed);
            let authority = String::from_utf8_lossy(&authority);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    authority = %authority,
                    "gRPC client sent an empty or invalid HTTP/2 :authority header ({authority:?}); \
                     the server repaired the request by dropping it, so it is served normally. \
                     Tyk gateways older than 5.8.3 do this unless coprocess_options.grpc_authority \
                     (TYK_GW_COPROCESSOPTIONS_GRPCAUTHORITY) is set, and Python grpcio does it over \
                     Unix sockets. Set grpc_authority on the gateway (e.g. \"localhost\") to avoid \
                     the repair. This message is logged once per process."
                );
            }
            tracing::debug!(authority = %authority, "repairing HTTP/2 :authority on this connection");
        }
        Some(BlockOutcome::Fallback(why)) => {
            *fell_back = true;
            stats.0.fallbacks.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(reason = %why, "authority repair stepped aside; forwarding raw bytes");
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityRepair<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(active) = this.active.as_deref_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        loop {
            if active.pos < active.out.len() {
                let n = buf.remaining().min(active.out.len() - active.pos);
                buf.put_slice(&active.out[active.pos..active.pos + n]);
                active.pos += n;
                if active.pos == active.out.len() {
                    active.out.clear();
                    active.pos = 0;
                    if active.rewriter.is_raw() {
                        this.active = None;
                    }
                }
                return Poll::Ready(Ok(()));
            }
            if active.rewriter.is_raw() {
                this.active = None;
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            if active.eof || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut active.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n == 0 {
                active.eof = true;
                active.rewriter.finish(&mut active.out);
            } else {
                active.rewriter.feed(&active.scratch[..n], &mut active.out);
            }
            report(active, &mut this.repaired, &mut this.fell_back, &this.stats);
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(feature = "tonic")]
impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityRepair<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
