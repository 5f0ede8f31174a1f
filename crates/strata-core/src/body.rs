//! The response body of [`CacheService`](crate::CacheService): stored
//! bytes on a hit, the inner body untouched on a pass-through.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use pin_project_lite::pin_project;

/// The error type of [`CacheBody`]: the inner body's error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// A body that is either whole bytes (served from the cache, or just
    /// buffered to be stored) or the inner service's own body, streamed
    /// through as it comes.
    #[derive(Debug)]
    pub struct CacheBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<B> {
        Full { data: Option<Bytes> },
        Inner { #[pin] body: B },
        Rest { prefix: Option<Bytes>, body: Pin<Box<B>> },
        Failed { error: Option<BoxError> },
    }
}

impl<B> CacheBody<B> {
    /// A body of exactly these bytes.
    pub fn full(data: Bytes) -> Self {
        Self {
            kind: Kind::Full { data: Some(data) },
        }
    }

    /// An empty body (HEAD, 304).
    pub fn empty() -> Self {
        Self {
            kind: Kind::Full { data: None },
        }
    }

    /// The inner service's body, passed through.
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// Bytes already read from `body`, then the rest of it.
    pub(crate) fn prefixed(prefix: Bytes, body: Pin<Box<B>>) -> Self {
        Self {
            kind: Kind::Rest {
                prefix: Some(prefix),
                body,
            },
        }
    }

    /// A body that fails with `error` when read: the inner body failed while
    /// the cache was buffering it, and the client must see that failure.
    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            kind: Kind::Failed { error: Some(error) },
        }
    }
}

impl<B> Body for CacheBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Full { data } => Poll::Ready(
                data.take()
                    .filter(|d| !d.is_empty())
                    .map(|d| Ok(Frame::data(d))),
            ),
            KindProj::Inner { body } => body.poll_frame(cx).map_err(Into::into),
            KindProj::Rest { prefix, body } => {
                if let Some(prefix) = prefix.take().filter(|p| !p.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                body.as_mut().poll_frame(cx).map_err(Into::into)
            }
            KindProj::Failed { error } => Poll::Ready(error.take().map(Err)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full { data } => data.as_ref().is_none_or(Bytes::is_empty),
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Rest { prefix, body } => {
                prefix.as_ref().is_none_or(Bytes::is_empty) && body.is_end_stream()
            }
            Kind::Failed { error } => error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Kind::Inner { body } => body.size_hint(),
            Kind::Rest { prefix, body } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = body.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
            Kind::Failed { .. } => SizeHint::default(),
        }
    }
}

/// A body read whole, or the reason it was not.
pub(crate) enum Buffered<B> {
    Whole(Bytes),
    /// Longer than the limit after all: what was read, and the rest.
    TooLong(Bytes, B),
    Failed(BoxError),
}

/// Reads `body` whole, unless it proves longer than `limit`.
pub(crate) async fn buffer<B>(mut body: Pin<Box<B>>, limit: usize) -> Buffered<Pin<Box<B>>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut first: Option<Bytes> = None;
    let mut rest = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => return Buffered::Failed(error.into()),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        }; // trailers are not stored
        match &first {
            None if rest.is_empty() => first = Some(data),
            _ => {
                if let Some(first) = first.take() {
                    rest.extend_from_slice(&first);
                }
                rest.extend_from_slice(&data);
            }
        }
        let read = first.as_ref().map_or(rest.len(), Bytes::len);
        if read > limit {
            let read = first.take().unwrap_or_else(|| rest.split().freeze());
            return Buffered::TooLong(read, body);
        }
    }
    Buffered::Whole(first.unwrap_or_else(|| rest.freeze()))
}
