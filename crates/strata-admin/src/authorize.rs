//! Who may use the admin endpoints: the [`Authorize`] check every request
//! passes before anything else happens, and the ready [`BearerToken`].

use std::fmt;

use http::header::AUTHORIZATION;
use http::request::Parts;
use sha2::{Digest, Sha256};

/// What an [`Authorize`] check decided about one request.
///
/// A `bool` converts into it: `true` is [`Allow`](Decision::Allow), `false`
/// is [`Forbidden`](Decision::Forbidden).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through to the endpoint.
    Allow,
    /// The request carries no usable credentials: `401 Unauthorized` with
    /// `WWW-Authenticate: Bearer`.
    Unauthenticated,
    /// The request says who it is, and that one may not do this:
    /// `403 Forbidden`.
    Forbidden,
}

impl From<bool> for Decision {
    fn from(allowed: bool) -> Self {
        if allowed {
            Decision::Allow
        } else {
            Decision::Forbidden
        }
    }
}

/// The authorization check of the admin router, run on the request's head
/// before the body is read and before any endpoint does anything.
///
/// Implemented for every `Fn(&Parts) -> D` where `D` is a [`Decision`] or a
/// `bool`, so a closure reading a header or an extension that an outer
/// authentication layer set is enough. Annotate the closure's parameter
/// (`|parts: &Parts| ...`) so Rust infers a closure that accepts any
/// lifetime:
///
/// ```
/// use http::request::Parts;
/// use strata::admin::{Authorize, Decision};
///
/// #[derive(Clone)]
/// struct Staff(bool); // set by the application's own authentication
///
/// let is_staff = |parts: &Parts| match parts.extensions.get::<Staff>() {
///     None => Decision::Unauthenticated,
///     Some(staff) => staff.0.into(),
/// };
/// let (parts, ()) = http::Request::new(()).into_parts();
/// assert_eq!(is_staff.authorize(&parts), Decision::Unauthenticated);
/// ```
pub trait Authorize: Send + Sync + 'static {
    /// Decides whether this request may use the admin endpoints.
    fn authorize(&self, parts: &Parts) -> Decision;
}

impl<F, D> Authorize for F
where
    F: Fn(&Parts) -> D + Send + Sync + 'static,
    D: Into<Decision>,
{
    fn authorize(&self, parts: &Parts) -> Decision {
        self(parts).into()
    }
}

/// Allows requests that send `Authorization: Bearer <token>` with this
/// token.
///
/// No `Authorization` header, or one with another scheme, is
/// [`Unauthenticated`](Decision::Unauthenticated) (401); a bearer token that
/// does not match is [`Forbidden`](Decision::Forbidden) (403).
///
/// The comparison takes the same time whatever the presented token is:
/// both sides are hashed (SHA-256) and the digests compared without an
/// early exit, so neither the token's bytes nor its length leak through
/// timing. `Debug` does not print the token.
///
/// ```
/// use strata::admin::{Authorize, BearerToken, Decision};
///
/// let check = BearerToken::new("s3cret");
/// let request = http::Request::builder()
///     .header("authorization", "Bearer s3cret")
///     .body(())
///     .unwrap();
/// let (parts, ()) = request.into_parts();
/// assert_eq!(check.authorize(&parts), Decision::Allow);
/// ```
#[derive(Clone)]
pub struct BearerToken {
    digest: [u8; 32],
}

impl BearerToken {
    /// A check for this token.
    ///
    /// # Panics
    ///
    /// Panics when `token` is empty: an empty token would let an empty
    /// `Authorization: Bearer ` header in, which is never what was meant
    /// (typically an unset environment variable).
    pub fn new(token: impl AsRef<[u8]>) -> Self {
        let token = token.as_ref();
        assert!(
            !token.is_empty(),
            "strata-admin: the admin bearer token must not be empty"
        );
        Self {
            digest: digest(token),
        }
    }

    fn matches(&self, presented: &[u8]) -> bool {
        let presented = digest(presented);
        let difference = self
            .digest
            .iter()
            .zip(presented.iter())
            .fold(0u8, |acc, (expected, given)| acc | (expected ^ given));
        std::hint::black_box(difference) == 0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken").finish_non_exhaustive()
    }
}

impl Authorize for BearerToken {
    fn authorize(&self, parts: &Parts) -> Decision {
        match bearer_token(parts) {
            None => Decision::Unauthenticated,
            Some(presented) => self.matches(presented).into(),
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is
/// case-insensitive, RFC 9110 §11.1), or `None`.
fn bearer_token(parts: &Parts) -> Option<&[u8]> {
    let value = parts.headers.get(AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|&byte| byte == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(authorization: Option<&str>) -> Parts {
        let mut request = http::Request::builder();
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_bearer_token_is_checked_against_the_header() {
        let check = BearerToken::new("s3cret");
        assert_eq!(check.authorize(&parts(None)), Decision::Unauthenticated);
        assert_eq!(
            check.authorize(&parts(Some("Basic czNjcmV0"))),
            Decision::Unauthenticated
        );
        assert_eq!(
            check.authorize(&parts(Some("Bearer "))),
            Decision::Unauthenticated
        );
        assert_eq!(
            check.authorize(&parts(Some("Bearer s3cret"))),
            Decision::Allow
        );
        assert_eq!(
            check.authorize(&parts(Some("bearer  s3cret"))),
            Decision::Allow
        );
        assert_eq!(
            check.authorize(&parts(Some("Bearer s3cre"))),
            Decision::Forbidden
        );
        assert_eq!(
            check.authorize(&parts(Some("Bearer s3cret2"))),
            Decision::Forbidden
        );
        assert_eq!(
            check.authorize(&parts(Some("Bearers3cret"))),
            Decision::Unauthenticated
        );
    }

    #[test]
    fn debug_does_not_show_the_token() {
        let shown = format!("{:?}", BearerToken::new("s3cret"));
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    #[should_panic(expected = "must not be empty")]
    fn an_empty_token_is_refused() {
        let _ = BearerToken::new("");
    }

    #[test]
    fn closures_returning_bool_or_decision_authorize() {
        fn decide(check: &impl Authorize, parts: &Parts) -> Decision {
            check.authorize(parts)
        }
        let request = parts(None);
        assert_eq!(decide(&|_: &Parts| true, &request), Decision::Allow);
        assert_eq!(decide(&|_: &Parts| false, &request), Decision::Forbidden);
        assert_eq!(
            decide(&|_: &Parts| Decision::Unauthenticated, &request),
            Decision::Unauthenticated
        );
    }
}
