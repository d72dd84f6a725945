//! The body of the errors the engine answers by itself.
//!
//! Contract: Stoat answers some requests without a handler: protocol
//! errors (400 framing, 408, 413, 414, 431, 501, 505, ...), 404 and 405
//! from the router, 501 for an unknown method, 503 when a pipeline's ring
//! is full or a request's deadline passes, and 500 when a handler panics.
//! By default their bodies are a short `text/plain` line (or empty for
//! 404/405). [`Server::error_body`](crate::app::Server::error_body) sets
//! one [`ErrorPage`] for all of them: a content type and a function from
//! the status and the engine's short message to the body, like nginx's
//! `error_page` or actix's `ErrorHandlers`, but for the engine's own
//! answers (a handler's own error responses are the handler's business).
//! The status, `Allow` (405), `Retry-After` (503) and `Connection: close`
//! (protocol errors) are kept; only the body and its content type change.
//!
//! It runs only when such an error is answered, never on a served request.

use std::fmt;
use std::sync::Arc;

use crate::app::Response;

/// The function behind an [`ErrorPage`].
type Render = dyn Fn(u16, &str) -> Vec<u8> + Send + Sync;

/// The content type and body of the errors the engine generates.
#[derive(Clone)]
pub struct ErrorPage {
    content_type: Arc<str>,
    render: Arc<Render>,
}

impl fmt::Debug for ErrorPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorPage")
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}

impl ErrorPage {
    /// Bodies of type `content_type`, made by `render(status, message)`;
    /// `message` is the engine's short explanation (for a protocol error
    /// the same text the default body holds, e.g. "request body too
    /// large"; for 404 "no such resource").
    pub fn new(
        content_type: &str,
        render: impl Fn(u16, &str) -> Vec<u8> + Send + Sync + 'static,
    ) -> ErrorPage {
        ErrorPage {
            content_type: content_type.into(),
            render: Arc::new(render),
        }
    }

    /// The content type.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// The body for `status` with the engine's `message`.
    pub fn render(&self, status: u16, message: &str) -> Vec<u8> {
        (self.render)(status, message)
    }

    /// `response` (an engine error of `status`) with this page's body.
    /// An invalid content type (checked like any header field) leaves
    /// the response as it was.
    pub(crate) fn apply(&self, mut response: Response, message: &str) -> Response {
        if response
            .append_header("Content-Type", self.content_type.to_string())
            .is_err()
        {
            return response;
        }
        let body = self.render(response.status(), message);
        response.body(body)
    }
}

/// The engine's short message for a status it answers from the app layer.
pub(crate) fn message(status: u16) -> &'static str {
    match status {
        404 => "no such resource",
        405 => "method not allowed on this resource",
        500 => "the handler failed",
        501 => "method not implemented",
        503 => "the service is busy; retry shortly",
        _ => "error",
    }
}
