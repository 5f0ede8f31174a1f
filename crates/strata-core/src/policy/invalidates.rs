//! [`Invalidates`]: what a successful write makes stale, beyond its own URL.

use tower_layer::Layer;

use crate::annotate::Annotate;

/// What a successful unsafe request (POST, PUT, PATCH, DELETE) makes stale,
/// beyond its own URL, which the layer always invalidates (RFC 9111 §4.4).
///
/// Attach it to the write route as a layer, or set it as a response
/// extension from the handler when the tags depend on the request.
///
/// ```
/// use strata::Invalidates;
///
/// let on_update = Invalidates::tags(["materials"]).tag("material:42").url("/api/materials/");
/// assert_eq!(on_update.tag_list(), ["materials", "material:42"]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invalidates {
    tags: Vec<String>,
    urls: Vec<String>,
    keep_own_url: bool,
}

impl Invalidates {
    /// Invalidates nothing, not even the request's own URL: for write
    /// routes that change no cached data (an admin action, a login).
    ///
    /// ```
    /// assert!(strata::Invalidates::none().keeps_own_url());
    /// ```
    pub fn none() -> Self {
        Self {
            keep_own_url: true,
            ..Self::default()
        }
    }

    /// Whether the request's own URL stays cached (only after
    /// [`none`](Self::none)).
    pub fn keeps_own_url(&self) -> bool {
        self.keep_own_url
    }

    /// Invalidates these tags.
    pub fn tags<I, T>(tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self {
            tags: tags.into_iter().map(Into::into).collect(),
            urls: Vec::new(),
            keep_own_url: false,
        }
    }

    /// Adds one more tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Also invalidates every cached response under this URL's path.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// The tags to invalidate.
    pub fn tag_list(&self) -> &[String] {
        &self.tags
    }

    /// The extra URLs to invalidate.
    pub fn url_list(&self) -> &[String] {
        &self.urls
    }
}

impl<S> Layer<S> for Invalidates {
    type Service = Annotate<S, Invalidates>;

    fn layer(&self, inner: S) -> Self::Service {
        Annotate::new(inner, self.clone())
    }
}
