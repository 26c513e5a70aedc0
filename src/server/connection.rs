//! What the server knows of a connection: the local address it came in on. With a daemon
//! listening on every address (`0.0.0.0`, `[::]`), that is the address the client used, and a
//! request naming it as its host is for this daemon. [`crate::server::listen`] records it in
//! each request's extensions.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::Extensions;

/// The local address of a connection (None when the socket cannot say).
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub Option<SocketAddr>);

/// Records the connection's local address in a request's extensions.
pub fn record(extensions: &mut Extensions, local: LocalAddr) {
    extensions.insert(ConnectInfo(local));
}

/// The local IP address of the connection a request came on, when the server recorded it.
pub fn local_ip(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<LocalAddr>>()
        .and_then(|ConnectInfo(LocalAddr(a))| a.map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_address_is_read_back_and_none_is_none() {
        let mut e = Extensions::new();
        assert_eq!(local_ip(&e), None);
        record(
            &mut e,
            LocalAddr(Some(SocketAddr::from(([10, 1, 2, 3], 9470)))),
        );
        assert_eq!(local_ip(&e), Some(IpAddr::from([10, 1, 2, 3])));
        let mut e = Extensions::new();
        record(&mut e, LocalAddr(None));
        assert_eq!(local_ip(&e), None);
    }
}
