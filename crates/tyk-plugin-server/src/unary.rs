//! Unary gRPC framing for the Dispatcher methods, without a codec.
//!
//! tonic's codec path grows a buffer while the request arrives and copies the
//! reply into a second buffer to frame it. For an echoed 40 MB Object that is
//! two extra copies of the message, each with fresh pages to fault in. Here
//! the request is read into a buffer of exactly the size its frame prefix
//! announces (or sliced without a copy when it arrives in one DATA frame), and
//! the reply goes out as a 5-byte prefix followed by the reply bytes
//! themselves: an echoed Object is never copied on the way out.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use tonic::Status;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Replies up to this size are framed by copying them behind the prefix (one
/// DATA frame); larger ones are sent as prefix + the bytes themselves.
const COPY_REPLY_MAX: usize = 16 * 1024;

const GRPC_CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/grpc");

/// Reads the single message of a unary call, refusing anything larger than
/// `max` bytes before buffering it.
pub(crate) async fn read_message<B>(req: http::Request<B>, max: usize) -> Result<Bytes, Status>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if let Some(enc) = req.headers().get("grpc-encoding")
        && enc.as_bytes() != b"identity"
    {
        return Err(Status::unimplemented(format!(
            "request is compressed with {:?}; this server accepts uncompressed messages only \
             (the Tyk gateway never compresses plugin calls)",
            String::from_utf8_lossy(enc.as_bytes())
        )));
    }
    let mut body = std::pin::pin!(req.into_body());
    let mut reader = MessageReader::new(max);
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let frame = frame.map_err(|e| Status::from_error(e.into()))?;
        if let Ok(data) = frame.into_data() {
            reader.push(data)?;
        }
    }
    reader.finish()
}

/// Collects one length-prefixed gRPC message from DATA frames.
struct MessageReader {
    max: usize,
    prefix: [u8; 5],
    prefix_len: usize,
    state: ReadState,
}

enum ReadState {
    Prefix,
    Body { len: usize, buf: BytesMut },
    Done(Bytes),
}

impl MessageReader {
    fn new(max: usize) -> Self {
        Self {
            max,
            prefix: [0; 5],
            prefix_len: 0,
            state: ReadState::Prefix,
        }
    }

    fn push(&mut self, mut data: Bytes) -> Result<(), Status> {
        while data.has_remaining() {
            match &mut self.state {
                ReadState::Prefix => {
                    let take = (5 - self.prefix_len).min(data.len());
                    self.prefix[self.prefix_len..self.prefix_len + take]
                        .copy_from_slice(&data[..take]);
                    self.prefix_len += take;
                    data.advance(take);
                    if self.prefix_len == 5 {
                        let len = self.start_body()?;
                        if data.len() >= len {
                            // The common case: the whole message in this frame.
                            self.state = ReadState::Done(data.split_to(len));
                        } else {
                            self.state = ReadState::Body {
                                len,
                                buf: BytesMut::with_capacity(len),
                            };
                        }
                    }
                }
                ReadState::Body { len, buf } => {
                    let take = (*len - buf.len()).min(data.len());
                    buf.put_slice(&data[..take]);
                    data.advance(take);
                    if buf.len() == *len {
                        let done = std::mem::take(buf).freeze();
                        self.state = ReadState::Done(done);
                    }
                }
                ReadState::Done(_) => {
                    return Err(Status::invalid_argument(
                        "a unary call must carry exactly one message; this one carried more",
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks the prefix just read and returns the message length.
    fn start_body(&self) -> Result<usize, Status> {
        match self.prefix[0] {
            0 => {}
            1 => {
                return Err(Status::internal(
                    "protocol error: message has the compressed flag set but the call \
                     declared no grpc-encoding",
                ));
            }
            f => {
                return Err(Status::internal(format!(
                    "protocol error: invalid compressed flag {f} (valid: 0 and 1)"
                )));
            }
        }
        let len = u32::from_be_bytes([
            self.prefix[1],
            self.prefix[2],
            self.prefix[3],
            self.prefix[4],
        ]) as usize;
        if len > self.max {
            return Err(Status::out_of_range(format!(
                "message of {len} bytes exceeds the limit of {} bytes \
                 (server.max_recv_message_size)",
                self.max
            )));
        }
        Ok(len)
    }

    fn finish(self) -> Result<Bytes, Status> {
        match self.state {
            ReadState::Done(msg) => Ok(msg),
            ReadState::Prefix if self.prefix_len == 0 => {
                Err(Status::internal("the request carried no message"))
            }
            ReadState::Prefix => Err(Status::internal(format!(
                "request ended inside a message prefix ({} of 5 bytes)",
                self.prefix_len
            ))),
            ReadState::Body { len, buf } => Err(Status::internal(format!(
                "request ended inside a message ({} of {len} bytes)",
                buf.len()
            ))),
        }
    }
}

/// A successful unary reply carrying `msg`, or OUT_OF_RANGE when it is
/// larger than `max` bytes.
pub(crate) fn reply(msg: Bytes, max: usize) -> http::Response<tonic::body::Body> {
    // The gRPC length prefix is 32 bits.
    let max = max.min(u32::MAX as usize);
    if msg.len() > max {
        return Status::out_of_range(format!(
            "reply of {} bytes exceeds the limit of {max} bytes (server.max_send_message_size)",
            msg.len()
        ))
        .into_http();
    }
    let mut prefix = [0u8; 5];
    prefix[1..].copy_from_slice(&(msg.len() as u32).to_be_bytes());
    let mut frames = [None, None];
    if msg.len() <= COPY_REPLY_MAX {
        let mut one = BytesMut::with_capacity(5 + msg.len());
        one.put_slice(&prefix);
        one.put_slice(&msg);
        frames[0] = Some(one.freeze());
    } else {
        frames[0] = Some(Bytes::copy_from_slice(&prefix));
        frames[1] = Some(msg);
    }
    let mut res = http::Response::new(tonic::body::Body::new(UnaryBody {
        frames,
        trailers: true,
    }));
    res.headers_mut()
        .insert(http::header::CONTENT_TYPE, GRPC_CONTENT_TYPE);
    res
}

/// The body of a successful unary reply: its DATA frames, then `grpc-status: 0`.
struct UnaryBody {
    frames: [Option<Bytes>; 2],
    trailers: bool,
}

impl Body for UnaryBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(data) = self.frames.iter_mut().find_map(Option::take) {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if std::mem::take(&mut self.trailers) {
            let mut t = HeaderMap::with_capacity(1);
            t.insert("grpc-status", HeaderValue::from_static("0"));
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        !self.trailers && self.frames.iter().all(Option::is_none)
    }

    fn size_hint(&self) -> SizeHint {
        let n = self.frames.iter().flatten().map(|b| b.len() as u64).sum();
        SizeHint::with_exact(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn framed(msg: &[u8]) -> Vec<u8> {
        let mut v = vec![0];
        v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        v.extend_from_slice(msg);
        v
    }

    fn read(chunks: &[&[u8]], max: usize) -> Result<Bytes, Status> {
        let mut r = MessageReader::new(max);
        for c in chunks {
            r.push(Bytes::copy_from_slice(c))?;
        }
        r.finish()
    }

    #[test]
    fn one_frame_is_sliced_without_a_copy() {
        let wire = Bytes::from(framed(b"hello"));
        let mut r = MessageReader::new(100);
        r.push(wire.clone()).unwrap();
        let msg = r.finish().unwrap();
        assert_eq!(&msg[..], b"hello");
        assert_eq!(msg.as_ptr(), wire[5..].as_ptr(), "a slice of the frame");
    }

    #[test]
    fn a_message_split_anywhere_is_reassembled() {
        let msg: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let wire = framed(&msg);
        for cut1 in [1, 3, 5, 6, 100, 2999] {
            for cut2 in [cut1 + 1, cut1 + 7, wire.len() - 1] {
                if cut2 > wire.len() {
                    continue;
                }
                let (a, rest) = wire.split_at(cut1);
                let (b, c) = rest.split_at(cut2 - cut1);
                let got = read(&[a, b, c], 1 << 20).unwrap();
                assert_eq!(&got[..], &msg[..], "cuts {cut1} {cut2}");
            }
        }
        // Byte by byte.
        let pieces: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(&read(&pieces, 1 << 20).unwrap()[..], &msg[..]);
    }

    #[test]
    fn an_empty_message_is_a_message() {
        assert_eq!(read(&[&framed(b"")], 10).unwrap().len(), 0);
    }

    #[test]
    fn framing_errors_are_statuses() {
        let code = |r: Result<Bytes, Status>| r.unwrap_err().code();
        assert_eq!(code(read(&[], 10)), Code::Internal);
        assert_eq!(code(read(&[&[0, 0, 0]], 10)), Code::Internal);
        assert_eq!(code(read(&[&[0, 0, 0, 0, 4, 1, 2]], 10)), Code::Internal);
        assert_eq!(code(read(&[&[1, 0, 0, 0, 1, 7]], 10)), Code::Internal);
        assert_eq!(code(read(&[&[2, 0, 0, 0, 1, 7]], 10)), Code::Internal);
        let two = [framed(b"a"), framed(b"b")].concat();
        assert_eq!(code(read(&[&two], 10)), Code::InvalidArgument);
        let big = read(&[&framed(&[0; 11])], 10).unwrap_err();
        assert_eq!(big.code(), Code::OutOfRange);
        assert!(big.message().contains("max_recv_message_size"), "{big:?}");
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_the_body_arrives() {
        let mut r = MessageReader::new(1024);
        let err = r.push(Bytes::from_static(&[0, 0x7f, 0, 0, 0])).unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange);
    }

    async fn collect(res: http::Response<tonic::body::Body>) -> (Vec<Bytes>, Option<HeaderMap>) {
        let mut body = std::pin::pin!(res.into_body());
        let (mut data, mut trailers) = (Vec::new(), None);
        while let Some(f) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            match f.unwrap().into_data() {
                Ok(d) => data.push(d),
                Err(f) => trailers = f.into_trailers().ok(),
            }
        }
        (data, trailers)
    }

    #[tokio::test]
    async fn replies_are_framed_and_large_ones_are_not_copied() {
        for size in [0, 10, COPY_REPLY_MAX, COPY_REPLY_MAX + 1, 1 << 20] {
            let msg = Bytes::from(vec![7u8; size]);
            let res = reply(msg.clone(), 1 << 21);
            assert_eq!(res.headers()["content-type"], "application/grpc");
            let (data, trailers) = collect(res).await;
            assert_eq!(trailers.unwrap()["grpc-status"], "0");
            let all: Vec<u8> = data.iter().flat_map(|d| d.iter().copied()).collect();
            assert_eq!(all, framed(&msg), "size {size}");
            if size > COPY_REPLY_MAX {
                assert_eq!(data[1].as_ptr(), msg.as_ptr(), "sent as is");
            } else {
                assert_eq!(data.len(), 1);
            }
        }
    }

    #[tokio::test]
    async fn an_oversized_reply_is_out_of_range() {
        let res = reply(Bytes::from(vec![0u8; 11]), 10);
        let status = Status::from_header_map(res.headers()).unwrap();
        assert_eq!(status.code(), Code::OutOfRange);
        assert!(status.message().contains("max_send_message_size"));
    }
}
