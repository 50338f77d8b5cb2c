//! EdgeSync before authentication, on the edge: what a peer can make the
//! edge do before it is known to be a hub.
//!
//! * In the TLS handshake ([`tls_incoming`](crate::channel::tls_incoming)):
//!   once the edge holds hub certificates and no bootstrap is pending, a
//!   client certificate that is not a hub's is refused.
//! * In the first message: whatever the handshake let through, the first
//!   gRPC message of a stream (the `Hello`) may be at most
//!   [`FIRST_MESSAGE_LIMIT`] octets; its length prefix is checked before
//!   its body is read or decoded, so an unknown peer cannot make the edge
//!   buffer a 200 MiB `Hello` ([`edge_sync_server`]).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use postern_proto::edgesync::edge_sync_server::EdgeSyncServer;
use tonic::server::NamedService;

use crate::edge_side::EdgeSyncService;

/// The largest first message (a `Hello`) an edge reads: 64 KiB.
pub const FIRST_MESSAGE_LIMIT: u32 = 64 * 1024;
/// The largest later message (a snapshot of a large organisation).
pub const MESSAGE_LIMIT: usize = 256 * 1024 * 1024;

/// The edge's EdgeSync service for tonic's router, with the first
/// message of every stream capped at [`FIRST_MESSAGE_LIMIT`].
pub fn edge_sync_server(service: EdgeSyncService) -> FirstMessageCap<EdgeSyncServer<EdgeSyncService>> {
    FirstMessageCap(EdgeSyncServer::new(service).max_decoding_message_size(MESSAGE_LIMIT))
}

/// A gRPC service whose requests' first message is capped.
#[derive(Clone, Debug)]
pub struct FirstMessageCap<S>(S);

impl<S: NamedService> NamedService for FirstMessageCap<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower::Service<http::Request<tonic::body::Body>> for FirstMessageCap<S>
where
    S: tower::Service<http::Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        self.0.call(
            request.map(|body| tonic::body::Body::new(CappedFirstMessage::new(body, FIRST_MESSAGE_LIMIT))),
        )
    }
}

/// The first message of an EdgeSync stream is too large; the peer is at fault.
#[derive(Debug, thiserror::Error)]
#[error(
    "the first EdgeSync message declares {declared} octets; at most {FIRST_MESSAGE_LIMIT} are read before the peer is authenticated"
)]
pub struct FirstMessageTooLarge {
    /// The length the gRPC frame declared.
    pub declared: u32,
}

/// A request body that fails as soon as the first gRPC frame's 5-octet
/// prefix (compressed flag, big-endian length) declares more than `limit`.
#[derive(Debug)]
pub struct CappedFirstMessage<B> {
    inner: B,
    prefix: Vec<u8>,
    checked: bool,
    limit: u32,
}

impl<B> CappedFirstMessage<B> {
    /// Caps `inner`'s first message at `limit` octets.
    pub fn new(inner: B, limit: u32) -> Self {
        Self {
            inner,
            prefix: Vec::with_capacity(5),
            checked: false,
            limit,
        }
    }

    /// Takes prefix octets from `data`; `Err` once the prefix is over the limit.
    fn inspect(&mut self, data: &Bytes) -> Result<(), FirstMessageTooLarge> {
        if self.checked {
            return Ok(());
        }
        let wanted = 5 - self.prefix.len();
        let take = wanted.min(data.remaining());
        self.prefix.extend_from_slice(&data[..take]);
        if let [_, a, b, c, d] = self.prefix[..] {
            self.checked = true;
            let declared = u32::from_be_bytes([a, b, c, d]);
            if declared > self.limit {
                return Err(FirstMessageTooLarge { declared });
            }
        }
        Ok(())
    }
}

impl<B> Body for CappedFirstMessage<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        Poll::Ready(match frame {
            Some(Ok(frame)) => match frame.data_ref().map(|data| this.inspect(data)) {
                Some(Err(too_large)) => {
                    tracing::warn!(
                        declared = too_large.declared,
                        "EdgeSync first message refused: too large"
                    );
                    Some(Err(too_large.into()))
                }
                _ => Some(Ok(frame)),
            },
            Some(Err(e)) => Some(Err(e.into())),
            None => None,
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn check(chunks: &[&[u8]], limit: u32) -> Result<(), FirstMessageTooLarge> {
        let mut capped = CappedFirstMessage::new((), limit);
        for chunk in chunks {
            capped.inspect(&Bytes::copy_from_slice(chunk))?;
        }
        Ok(())
    }

    #[test]
    fn the_prefix_is_read_across_chunks() {
        assert!(check(&[&[0, 0, 0, 0x01, 0x00, 1, 2, 3]], 256).is_ok());
        assert_eq!(
            check(&[&[0, 0], &[0], &[0x01, 0x01]], 256).unwrap_err().declared,
            257
        );
        // Only the first message is capped.
        assert!(check(&[&[0, 0, 0, 0, 1, 9], &[0, 0xff, 0xff, 0xff, 0xff]], 256).is_ok());
        assert_eq!(
            check(&[&[0, 0x0c, 0x80, 0, 0]], FIRST_MESSAGE_LIMIT)
                .unwrap_err()
                .declared,
            200 * 1024 * 1024
        );
    }
}
