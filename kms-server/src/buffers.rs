//! The request body and the response body of a KMS call, held in buffers that are zeroized when
//! dropped: an Encrypt request carries a plaintext, and the answers of Decrypt, GenerateDataKey and
//! GenerateRandom carry plaintexts and data keys.
//!
//! What this reaches is the endpoint's own copy. The transport keeps copies of its own that it
//! frees without zeroing, and no safe code outside it can reach them: hyper's per-connection read
//! buffer (the raw request, until later reads on the connection overwrite it), h2's frame buffers,
//! and rustls's record buffers (which decrypt the request in place; the response is encrypted in
//! place over its plaintext copy). A body chunk the endpoint ends up owning alone is zeroized.

use axum::body::{Body, Bytes};
use http_body_util::BodyExt;
use zeroize::{Zeroize, Zeroizing};

/// Why a request body was not read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// The connection failed or the client sent a malformed body.
    Unreadable,
}

/// The request body, at most `limit` bytes, in one zeroizing buffer. A `Content-Length` sizes the
/// buffer once; otherwise it grows by moving to a bigger buffer and zeroizing the old one.
pub(crate) async fn read_body(
    mut body: Body,
    limit: usize,
) -> Result<Zeroizing<Vec<u8>>, BodyError> {
    let hint = hyper::body::Body::size_hint(&body);
    if usize::try_from(hint.lower()).map_or(true, |n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let expected = hint
        .upper()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    let mut buf = Zeroizing::new(Vec::with_capacity(expected.min(limit)));
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| BodyError::Unreadable)?.into_data() else {
            continue; // trailers
        };
        if buf.len() + data.len() > limit {
            forget(data);
            return Err(BodyError::TooLarge);
        }
        kms_core::secret::extend_zeroizing(&mut buf, &data);
        forget(data);
    }
    Ok(buf)
}

/// Zeroizes a body chunk when this is its only owner (a chunk cut from the connection's read buffer
/// shares it with hyper, which reuses it).
fn forget(chunk: Bytes) {
    if let Ok(mut owned) = chunk.try_into_mut() {
        owned[..].zeroize();
    }
}

/// A response body over `json` that zeroizes it once hyper has written it and let go of it.
pub(crate) fn zeroizing_body(json: Zeroizing<Vec<u8>>) -> Body {
    Body::from(Bytes::from_owner(json))
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use hyper::body::{Frame, SizeHint};

    use super::*;

    /// A body of several chunks and no declared length (as with chunked transfer coding).
    struct Chunks(VecDeque<Bytes>);

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
        }
        fn size_hint(&self) -> SizeHint {
            SizeHint::default()
        }
    }

    fn chunked(n: usize, size: usize) -> Body {
        Body::new(Chunks(
            (0..n).map(|i| Bytes::from(vec![i as u8; size])).collect(),
        ))
    }

    #[tokio::test]
    async fn reads_every_chunk_within_the_limit() {
        let body = read_body(Body::from("{\"Plaintext\":\"AA==\"}"), 64)
            .await
            .unwrap();
        assert_eq!(&body[..], b"{\"Plaintext\":\"AA==\"}");
        assert_eq!(body.capacity(), body.len(), "sized by the length once");
        assert_eq!(read_body(Body::empty(), 64).await.unwrap().len(), 0);
        let body = read_body(chunked(10, 100), 1000).await.unwrap();
        let want: Vec<u8> = (0..10u8).flat_map(|i| [i; 100]).collect();
        assert_eq!(&body[..], &want[..]);
    }

    #[tokio::test]
    async fn refuses_a_body_over_the_limit() {
        assert_eq!(
            read_body(Body::from(vec![0u8; 65]), 64).await,
            Err(BodyError::TooLarge)
        );
        assert_eq!(
            read_body(chunked(11, 100), 1000).await,
            Err(BodyError::TooLarge)
        );
        assert_eq!(
            read_body(chunked(10, 100), 1000).await.map(|b| b.len()),
            Ok(1000)
        );
    }

    #[tokio::test]
    async fn the_response_body_is_the_json() {
        let body = zeroizing_body(Zeroizing::new(b"{\"Plaintext\":\"AQI=\"}".to_vec()));
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"{\"Plaintext\":\"AQI=\"}");
    }
}
