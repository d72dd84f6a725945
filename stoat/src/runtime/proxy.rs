//! Connections from load balancers: which peers must start with a PROXY
//! header, reading it off the front of a connection's first bytes, and what
//! a request knows of its connection's endpoints.
//!
//! Contract:
//! - [`ProxyPolicy::at_accept`] is decided once, at accept, from the
//!   peer's address: with `proxy_protocol` on, a peer in `trusted_proxies`
//!   must send a header ([`Expect::Header`]); nobody else may
//!   ([`Expect::NoHeader`]: a spoofed header is refused, not mistaken for
//!   a malformed request).
//! - [`take_header`] runs on the first bytes of a connection, before any
//!   HTTP parsing: a complete header (where one is expected) is consumed
//!   and its client address returned; bytes that are not one go on to HTTP
//!   (where none may come); anything else closes the connection without an
//!   answer and is counted in [`ProxyCounters`].
//! - [`ConnInfo`] is what [`RawRequest`](super::RawRequest) carries of the
//!   connection: on the network thread the socket (the peer's address is
//!   asked of the kernel only when a handler wants it, so connections pay
//!   nothing for it), the PROXY header's client address, and the trusted
//!   proxies for `X-Forwarded-For`/`Forwarded`; off the thread (a pipeline
//!   job), both addresses resolved when the request was copied.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{Cidr, HttpConfig};
use crate::proto::proxy::{self, Accept, Addresses, ProxyError, Status};

/// The server's PROXY protocol settings.
#[derive(Debug, Default)]
pub(crate) struct ProxyPolicy {
    accept: Option<Accept>,
    pub trusted: Vec<Cidr>,
    pub counters: ProxyCounters,
}

/// Counts of PROXY headers, summed over the server's threads.
#[derive(Debug, Default)]
pub struct ProxyCounters {
    /// Connections whose header gave a client address (or `UNKNOWN`).
    pub proxied: AtomicU64,
    /// v2 `LOCAL` headers (health checks of the load balancer itself).
    pub local: AtomicU64,
    /// Connections closed without an answer: a header missing where
    /// required, malformed, of a version not accepted, or cut short by the
    /// end of the connection.
    pub refused: AtomicU64,
}

impl ProxyPolicy {
    pub fn new(http: &HttpConfig) -> ProxyPolicy {
        ProxyPolicy {
            accept: http.proxy_protocol.accept(),
            trusted: http.trusted_proxies.clone(),
            counters: ProxyCounters::default(),
        }
    }

    /// What a connection from `peer` must start with.
    #[inline]
    pub fn at_accept(&self, peer: &SocketAddr) -> Expect {
        match self.accept {
            None => Expect::Http,
            Some(_) if is_trusted(&self.trusted, peer.ip()) => Expect::Header,
            Some(_) => Expect::NoHeader,
        }
    }
}

/// What the first bytes of a connection must be (decided at accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// HTTP: nothing to check (PROXY protocol off, or the check is done).
    Http,
    /// A PROXY header (the peer is a trusted proxy).
    Header,
    /// HTTP, and not a PROXY header (the peer is not trusted).
    NoHeader,
}

/// Whether `ip` is in one of `trusted`.
pub(crate) fn is_trusted(trusted: &[Cidr], ip: IpAddr) -> bool {
    trusted.iter().any(|net| net.contains(ip))
}

/// What the first bytes of a connection that must start with a header
/// amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// Not all there yet: read more (the request timeout still runs).
    NeedMore,
    /// `consumed` bytes were the header; `client` is the address it gave
    /// (`None`: `LOCAL`, `UNKNOWN`, `UNSPEC` or `UNIX`, so the peer is the
    /// client).
    Done {
        consumed: usize,
        client: Option<SocketAddr>,
    },
    /// Close without an answer (already counted).
    Refused(ProxyError),
}

/// Checks the front of `input` against what `expect` says, counting the
/// outcome. For [`Expect::NoHeader`], `Done { consumed: 0, .. }` means the
/// bytes are not a PROXY header: HTTP follows.
pub(crate) fn take_header(policy: &ProxyPolicy, expect: Expect, input: &[u8]) -> Header {
    let counters = &policy.counters;
    if expect == Expect::NoHeader {
        return match proxy::parse(input, Accept::Any) {
            Err(ProxyError::Missing) => Header::Done {
                consumed: 0,
                client: None,
            },
            // The first bytes might still turn out to be a header.
            Ok(Status::NeedMore) => Header::NeedMore,
            // A header (or the start of a malformed one) from a peer that
            // is not trusted: a spoofing attempt.
            Ok(_) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                Header::Refused(ProxyError::Missing)
            }
            Err(e) => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                Header::Refused(e)
            }
        };
    }
    let accept = policy.accept.unwrap_or(Accept::Any);
    match proxy::parse(input, accept) {
        Ok(Status::NeedMore) if input.len() >= proxy::MAX_HEADER_LEN => {
            // Cannot happen (a header is at most that long); refuse rather
            // than wait for bytes that cannot change the answer.
            counters.refused.fetch_add(1, Ordering::Relaxed);
            Header::Refused(ProxyError::V2TooLong)
        }
        Ok(Status::NeedMore) => Header::NeedMore,
        Ok(Status::Local { consumed }) => {
            counters.local.fetch_add(1, Ordering::Relaxed);
            Header::Done {
                consumed,
                client: None,
            }
        }
        Ok(Status::Proxied {
            consumed,
            addresses,
        }) => {
            counters.proxied.fetch_add(1, Ordering::Relaxed);
            let client = match addresses {
                Addresses::Inet { source, .. } => Some(source),
                Addresses::Unknown | Addresses::Unix => None,
            };
            Header::Done { consumed, client }
        }
        Err(e) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            Header::Refused(e)
        }
    }
}

/// Counts a connection that ended before its header was complete.
pub(crate) fn count_truncated(policy: &ProxyPolicy) {
    policy.counters.refused.fetch_add(1, Ordering::Relaxed);
}

/// What a request knows of its connection's endpoints. See the module doc.
/// Small (40 bytes: references, no addresses by value), since every
/// request carries one.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnInfo<'a> {
    /// The socket, asked for the peer's address on demand.
    fd: Option<BorrowedFd<'a>>,
    /// The client address of the connection's PROXY header.
    proxied: Option<&'a SocketAddr>,
    /// Peers whose forwarding fields are believed.
    trusted: &'a [Cidr],
    /// Both addresses, resolved already (a copied request).
    resolved: Option<&'a Resolved>,
}

/// A request's addresses resolved on its network thread, for a copy of it
/// that is handled elsewhere (a pipeline job).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The connection's peer.
    pub peer: Option<SocketAddr>,
    /// The client (see `Request::client_addr`).
    pub client: Option<SocketAddr>,
}

impl<'a> ConnInfo<'a> {
    /// A request on the network thread: the live socket, the PROXY
    /// header's client if any, the trusted proxies.
    pub(crate) fn live(
        fd: BorrowedFd<'a>,
        proxied: Option<&'a SocketAddr>,
        trusted: &'a [Cidr],
    ) -> ConnInfo<'a> {
        ConnInfo {
            fd: Some(fd),
            proxied,
            trusted,
            resolved: None,
        }
    }

    /// A request whose addresses were resolved when it was copied.
    pub fn from_resolved(resolved: &'a Resolved) -> ConnInfo<'a> {
        ConnInfo {
            fd: None,
            proxied: None,
            trusted: &[],
            resolved: Some(resolved),
        }
    }

    /// The address of the connection's other end (a load balancer's, when
    /// there is one): asked of the kernel (`getpeername`) on the network
    /// thread. `None` if the connection is already gone, or for a request
    /// built without a connection.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        if let Some(resolved) = self.resolved {
            return resolved.peer;
        }
        let fd = self.fd?;
        let addr = rustix::net::getpeername(fd).ok()??;
        SocketAddr::try_from(addr).ok()
    }

    /// The PROXY header's client address, if the connection had one that
    /// named a TCP client.
    pub fn proxied(&self) -> Option<SocketAddr> {
        self.proxied.copied()
    }

    /// The addresses resolved when the request was copied, if it was.
    pub fn resolved(&self) -> Option<&'a Resolved> {
        self.resolved
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        is_trusted(self.trusted, ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ProxyProtocol};

    fn policy(mode: ProxyProtocol, trusted: &[&str]) -> ProxyPolicy {
        let mut c = Config::default();
        c.http.proxy_protocol = mode;
        c.http.trusted_proxies = trusted.iter().map(|t| t.parse().unwrap()).collect();
        ProxyPolicy::new(&c.http)
    }

    #[test]
    fn header_expected_from_trusted_peers_only() {
        let p = policy(ProxyProtocol::V2, &["127.0.0.1/32"]);
        let at = |a: &str| p.at_accept(&a.parse().unwrap());
        assert_eq!(at("127.0.0.1:5000"), Expect::Header);
        assert_eq!(at("127.0.0.2:5000"), Expect::NoHeader);
        assert_eq!(at("[::ffff:127.0.0.1]:5000"), Expect::Header);
        let off = policy(ProxyProtocol::Off, &["127.0.0.1/32"]);
        assert_eq!(
            off.at_accept(&"127.0.0.1:5000".parse().unwrap()),
            Expect::Http
        );
    }

    #[test]
    fn no_header_from_untrusted_peers() {
        let p = policy(ProxyProtocol::Any, &["127.0.0.1/32"]);
        let t = |b: &[u8]| take_header(&p, Expect::NoHeader, b);
        let http = Header::Done {
            consumed: 0,
            client: None,
        };
        assert_eq!(t(b"GET / HTTP/1.1\r\n"), http);
        assert_eq!(t(b"POST / HTTP/1.1\r\n"), http);
        assert_eq!(t(b"PR"), Header::NeedMore);
        assert_eq!(t(b"\r\n\r"), Header::NeedMore);
        assert!(matches!(
            t(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
            Header::Refused(_)
        ));
        assert!(matches!(t(b"PROXY garbage\r\n"), Header::Refused(_)));
        assert!(matches!(
            t(b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c"),
            Header::NeedMore
        ));
        assert!(matches!(
            t(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00"),
            Header::Refused(_)
        ));
        assert_eq!(p.counters.refused.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn take_header_counts() {
        let p = policy(ProxyProtocol::Any, &["127.0.0.1/32"]);
        assert_eq!(
            take_header(&p, Expect::Header, b"PROXY TCP4 1.2"),
            Header::NeedMore
        );
        assert_eq!(
            take_header(
                &p,
                Expect::Header,
                b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 80\r\nGET"
            ),
            Header::Done {
                consumed: 40,
                client: Some("192.0.2.1:4000".parse().unwrap())
            }
        );
        assert_eq!(
            take_header(&p, Expect::Header, b"PROXY UNKNOWN\r\n"),
            Header::Done {
                consumed: 15,
                client: None
            }
        );
        let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
        assert_eq!(
            take_header(&p, Expect::Header, local),
            Header::Done {
                consumed: 16,
                client: None
            }
        );
        assert_eq!(
            take_header(&p, Expect::Header, b"GET / HTTP/1.1\r\n"),
            Header::Refused(ProxyError::Missing)
        );
        count_truncated(&p);
        let c = &p.counters;
        assert_eq!(c.proxied.load(Ordering::Relaxed), 2);
        assert_eq!(c.local.load(Ordering::Relaxed), 1);
        assert_eq!(c.refused.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn conn_info() {
        let none = ConnInfo::default();
        assert_eq!(none.peer_addr(), None);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let trusted: Vec<Cidr> = vec!["127.0.0.0/8".parse().unwrap()];
        use std::os::fd::AsFd;
        let info = ConnInfo::live(server.as_fd(), None, &trusted);
        assert_eq!(info.peer_addr(), Some(client.local_addr().unwrap()));
        assert!(info.is_trusted("127.0.0.9".parse().unwrap()));
        assert!(!info.is_trusted("10.0.0.1".parse().unwrap()));
        let resolved = Resolved {
            peer: Some(client.local_addr().unwrap()),
            client: None,
        };
        let copy = ConnInfo::from_resolved(&resolved);
        assert_eq!(copy.peer_addr(), Some(client.local_addr().unwrap()));
        assert!(std::mem::size_of::<ConnInfo<'_>>() <= 40);
    }
}
