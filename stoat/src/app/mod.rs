//! What a user of the library touches: [`Server`], [`Router`], [`Request`],
//! [`Response`] and [`Handler`].
//!
//! Handlers are plain functions or closures, `Fn(&Request) -> impl
//! IntoResponse`: no async colouring. They run on the network thread that
//! owns the connection, so they must be quick; the router catches a panic
//! and answers 500.
//!
//! ```no_run
//! use stoat::app::{Request, Response, Server};
//! use stoat::config::Config;
//!
//! fn user(req: &Request) -> Response {
//!     match req.param("id") {
//!         Some(id) => Response::text(format!("user {id}")),
//!         None => Response::new(400),
//!     }
//! }
//!
//! fn main() -> Result<(), stoat::app::StartError> {
//!     let mut config = Config::default();
//!     config.http.port = 8080;
//!     Server::new(config)
//!         .get("/", |_| "Hello, World!")
//!         .get("/users/{id}", user)
//!         .post("/echo", |req| Response::bytes(req.body().to_vec()))
//!         .delete("/items/{id}", |req| match req.param("id") {
//!             Some("0") => Err((404, "no such item")),
//!             _ => Ok(Response::new(204)),
//!         })
//!         .run() // until SIGINT or SIGTERM
//! }
//! ```
//!
//! Files, one concept each:
//! - `server.rs`: [`Server`], the one registration surface (every route
//!   kind), and [`StartError`].
//! - `router.rs`: [`Router`], method and path to handler; 404, 405, 501.
//! - `path_tree.rs`: route patterns (`/users/{id}`) and path matching.
//! - `request.rs`: [`Request`], the handler's view of a request.
//! - `query.rs`: query strings and percent-decoding ([`QueryPairs`]).
//! - `response.rs`: [`Response`] and [`IntoResponse`].
//! - `header.rs`: [`HeaderValue`] and the checks on response header fields.
//! - `handler.rs`: the [`Handler`] trait.
//! - `compress.rs`: gzip and brotli negotiated per request ([`Compression`]).
//! - `files.rs`: static files ([`Files`]): ETag, Range, precompressed siblings.
//! - `deferred.rs`: [`Responder`] (answer later, from any thread) and
//!   [`EventStream`] (server-sent events, [`SseEvent`]).
//! - `pipeline.rs`: typed pipelines: [`Pipeline`] (routes on a pipeline)
//!   and [`Job`] (a request on a pipeline thread, with its route).
//!
//! Every `send` ([`Responder::send`], [`Job::respond`],
//! [`EventStream::send`], [`WsSender`] and [`WsContext`]'s `send_*`)
//! returns `Result<(), SendError<T>>`: on `Full` or `Closed` the item comes
//! back. `EventStream::poll_writable` and `WsSender::poll_writable` take a
//! [`Waker`](std::task::Waker) woken when there is room again.
//! - `streaming.rs`: routes that take the request body as it arrives
//!   ([`StreamingHandler`], [`BodyWriter`]).
//! - `websocket.rs`: [`WebSocket`] endpoints, [`Session`] callbacks,
//!   [`WsSender`] (send from any thread).
//! - `health.rs`: [`Health`], the health path's ready/draining answer.
//! - `error_page.rs`: [`ErrorPage`], the body of the errors the engine
//!   answers by itself ([`Server::error_body`]).
//! - `restart.rs`: handing the listeners over to a successor process
//!   (SIGUSR2), zero-downtime restarts.

mod compress;
pub mod dashboard;
mod deferred;
mod error_page;
mod files;
mod handler;
mod header;
mod health;
mod logging;
pub mod metrics;
mod path_tree;
mod pipeline;
mod query;
mod request;
mod response;
pub mod restart;
mod router;
mod server;
mod streaming;
mod websocket;

pub use compress::{
    compressible, negotiate, Choice, Coding, Compressed, CompressedBody, Compression, Encoder,
    Workers,
};
pub use deferred::{EventStream, Responder, SseEvent};
pub use error_page::ErrorPage;
pub use files::{Files, FilesError};
pub use handler::Handler;
pub use header::{HeaderValue, InvalidHeader};
pub use health::Health;
pub use logging::init_logging;
pub use path_tree::{PatternError, MAX_PARAMS};
pub use pipeline::{per_job, Job, Pipeline};
pub use query::{decode_form, decode_path, QueryPairs};
pub use request::Request;
pub use response::{IntoResponse, Response};
pub use router::{RouteError, Router};
pub use server::{Server, StartError};
pub use streaming::{BodyChunk, BodyHandler, BodyWriter, StreamingHandler};
pub use websocket::{Message, Session, WebSocket, WsContext, WsSender};

pub use crate::proto::{Method, Version};
pub use crate::runtime::{Body, RawRequest, SendError, ServerHandle, Stats};
