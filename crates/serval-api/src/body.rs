//! Reading request bodies within a byte limit, and small request helpers shared by handlers.
//!
//! Every body Serval reads is bounded: the declared `Content-Length` is checked before reading,
//! and the bytes are counted while reading, so a chunked upload cannot grow past the limit.
//! A body that arrives as one chunk is handed on without a copy.

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// More than the limit; `received` is the declared length, or the bytes read before
    /// reading stopped.
    #[error("request body of {received} bytes is over the {limit} byte limit")]
    TooLarge { received: u64, limit: usize },
    /// The connection failed while reading.
    #[error("failed to read request body")]
    Read {
        #[source]
        source: axum::Error,
    },
}

/// The declared `Content-Length`, when present and numeric.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads a whole body of at most `limit` bytes.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if let Some(declared) = content_length(headers) {
        if declared > limit as u64 {
            return Err(BodyError::TooLarge {
                received: declared,
                limit,
            });
        }
    }
    let mut body = body;
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut received: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|source| BodyError::Read { source })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing Serval reads
        };
        if data.is_empty() {
            continue;
        }
        received += data.len() as u64;
        if received > limit as u64 {
            return Err(BodyError::TooLarge { received, limit });
        }
        match (&mut first, &mut rest) {
            (None, _) => first = Some(data),
            (Some(head), None) => {
                let mut buf = BytesMut::with_capacity(
                    content_length(headers).map_or(head.len() + data.len(), |n| n as usize),
                );
                buf.extend_from_slice(head);
                buf.extend_from_slice(&data);
                rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(match (first, rest) {
        (_, Some(buf)) => buf.freeze(),
        (Some(one), None) => one,
        (None, None) => Bytes::new(),
    })
}

/// Now, in AWS's `LastModified` format: `2019-09-24T20:54:08.943+0000`.
pub fn last_modified_now() -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+0000"
    );
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000+0000".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_declared_length_over_limit_before_reading() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_LENGTH, "11".parse().unwrap());
        let err = read_limited(&headers, Body::from("0123456789a"), 10)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            BodyError::TooLarge {
                received: 11,
                limit: 10
            }
        ));
    }

    #[tokio::test]
    async fn counts_chunked_bytes_and_stops_at_limit() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from("01234")),
            Ok(Bytes::from("56789")),
            Ok(Bytes::from("x")),
        ];
        let body = Body::from_stream(stream_of(chunks));
        let err = read_limited(&HeaderMap::new(), body, 10).await.unwrap_err();
        assert!(matches!(err, BodyError::TooLarge { received: 11, .. }));

        let chunks: Vec<Result<Bytes, std::io::Error>> =
            vec![Ok(Bytes::from("01234")), Ok(Bytes::from("56789"))];
        let body = Body::from_stream(stream_of(chunks));
        let got = read_limited(&HeaderMap::new(), body, 10).await.unwrap();
        assert_eq!(&got[..], b"0123456789");
    }

    #[tokio::test]
    async fn hands_single_chunk_on_without_copying() {
        let payload = Bytes::from_static(b"{\"a\":1}");
        let got = read_limited(&HeaderMap::new(), Body::from(payload.clone()), 100)
            .await
            .unwrap();
        assert_eq!(got.as_ptr(), payload.as_ptr());
    }

    #[test]
    fn formats_last_modified_like_aws() {
        let s = last_modified_now();
        assert_eq!(s.len(), "2019-09-24T20:54:08.943+0000".len(), "{s}");
        assert!(s.ends_with("+0000"));
    }

    /// A `Stream` over a vector, without pulling in a stream crate.
    fn stream_of<T: Unpin>(items: Vec<T>) -> impl iter_stream::Stream<Item = T> {
        iter_stream::Iter(items.into_iter())
    }

    mod iter_stream {
        pub use futures_core::Stream;
        use std::pin::Pin;
        use std::task::{Context, Poll};

        pub struct Iter<I>(pub I);

        impl<I: Iterator + Unpin> Stream for Iter<I> {
            type Item = I::Item;
            fn poll_next(
                mut self: Pin<&mut Self>,
                _cx: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                Poll::Ready(self.0.next())
            }
        }
    }
}
