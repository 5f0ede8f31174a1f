//! What travels with a request that goes to the inner service: why it
//! goes ([`Mode`]), and what the response handling needs to know of it
//! ([`Ctx`]).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use http::HeaderMap;

use crate::entry::Entry;
use crate::fence::Ticket;
use crate::stats::bump;
use crate::status::Fwd;

/// What `forward` may do with the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A miss: store if the policy allows, and learn the URL's rule.
    Fill(Fwd),
    /// The URL was last seen not storable: store only if that changed.
    Pass,
    /// Anonymous request for a per-user URL: store nothing.
    Bypass,
    /// A background refresh of a stale response (`stale-while-revalidate`):
    /// a fill that no client waits for, so it is not counted as a request.
    Refresh,
}

impl Mode {
    /// Why the request was forwarded, for `Cache-Status`.
    pub(crate) fn fwd(self) -> Fwd {
        match self {
            Self::Fill(fwd) => fwd,
            Self::Pass => Fwd::Miss,
            Self::Bypass => Fwd::Bypass,
            Self::Refresh => Fwd::Stale,
        }
    }
}

/// What the response handling needs to know about the request, once the
/// request itself has gone to the inner service.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) primary: &'a str,
    /// The normalised URL.
    pub(crate) name: String,
    pub(crate) user: Option<String>,
    pub(crate) head: bool,
    pub(crate) request_headers: HeaderMap,
    /// The fill's fence ticket, taken where its lookup began.
    pub(crate) ticket: Ticket,
    pub(crate) mode: Mode,
    /// Whether this is a client's request, which the figures count (a
    /// background refresh is not).
    pub(crate) counted: bool,
    /// When the request went to the inner service (RFC 9111 §4.2.3
    /// `request_time`).
    pub(crate) sent_at: SystemTime,
    /// The stale stored response whose validators the request carries.
    pub(crate) revalidating: Option<Arc<Entry>>,
}

impl Ctx<'_> {
    /// Counts the request as a miss or a bypass, if it is a client's.
    pub(crate) fn tally(&self, counter: &AtomicU64) {
        if self.counted {
            bump(counter);
        }
    }
}
