//! The `shared` model's claim on a connection (runtime/shared.rs): its
//! connections are edge-triggered on one epoll, so an event may reach a
//! thread while another drives the connection, and is left to that one,
//! which drives once more before it lets go. Over real sockets: a request
//! (and a peer's close) that comes while its connection's handler blocks
//! on one thread, the other thread idle in `epoll_wait`, is served once
//! the handler returns; nothing else waits meanwhile.
//!
//! Ordering without a clock: the second request is sent first, and then a
//! full exchange on another connection, served by the other network
//! thread. On loopback the first send queues its connection's event before
//! the second connection's request exists, and the idle thread takes
//! events in the order they came, so by the time that exchange is over,
//! the first connection's event has reached the idle thread, which found
//! the connection claimed. (If it were ever late, the test still checks
//! the answer: it would come by the plain path.)

#[macro_use]
mod common;

use std::sync::mpsc;

use stoat::config::Model;

use common::{blocking_server, get, join, Client, End, TIMEOUT};

/// A shared-model server whose `/block` handler has been entered on the
/// connection returned (which sent it), holding one network thread; and
/// the channel that releases it.
fn blocked_connection() -> (stoat::app::ServerHandle, Client, mpsc::Sender<()>) {
    let (server, entered, release) = blocking_server(Model::Shared);
    let mut c = Client::connect(server.local_addr());
    c.send(&get("/block"));
    entered
        .recv_timeout(TIMEOUT)
        .expect("the handler is entered");
    (server, c, release)
}

/// Sends `/hello` on a new connection and expects its answer while the
/// other network thread is blocked: it is served by the idle thread, after
/// the events that came before it.
fn other_connection_is_served(addr: std::net::SocketAddr) {
    let mut other = Client::connect(addr);
    other.send(&get("/hello"));
    assert_eq!(
        other.response().text(),
        "hello",
        "a connection waited for a handler blocked on another thread"
    );
}

#[test]
fn request_during_a_blocked_handler_is_served_after_it() {
    let (server, mut c, release) = blocked_connection();
    let addr = server.local_addr();
    // Read by no drive yet: its event finds the connection claimed.
    c.send(&get("/hello"));
    other_connection_is_served(addr);
    c.expect_nothing_yet();
    release.send(()).unwrap();
    assert_eq!(c.response().text(), "finished");
    // Without the drive again, its edge would have been lost: no answer.
    assert_eq!(c.response().text(), "hello");
    // The connection is still served as any other.
    c.send(&get("/hello"));
    assert_eq!(c.response().text(), "hello");
    server.shutdown();
    join(server);
}

#[test]
fn peer_close_during_a_blocked_handler_is_seen_after_it() {
    let (server, mut c, release) = blocked_connection();
    let addr = server.local_addr();
    // A request and the end of the stream, edge-triggered once, while the
    // connection is claimed: the drive again must read to the end.
    c.send(&get("/hello"));
    c.shutdown_write();
    other_connection_is_served(addr);
    release.send(()).unwrap();
    assert_eq!(c.response().text(), "finished");
    assert_eq!(c.response().text(), "hello");
    // Closed at once (the keep-alive timeout is 30 s, longer than the
    // client's read timeout): a drive that stopped at the short read
    // would have left it open.
    let end = c.try_end();
    assert!(
        matches!(end, Ok(End::Eof | End::Reset)),
        "the server did not close after the peer did: {end:?}"
    );
    server.shutdown();
    join(server);
}
