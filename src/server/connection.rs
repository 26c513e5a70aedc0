//! What the server knows of a connection: the local address it came in on. With a daemon
//! listening on every address (`0.0.0.0`, `[::]`), that is the address the client used, and a
//! request naming it as its host is for this daemon.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::extract::connect_info::Connected;
use axum::http::Extensions;
use axum::serve::IncomingStream;
use tokio::net::TcpListener;

/// The local address of a connection (None when the socket cannot say).
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub Option<SocketAddr>);

impl Connected<IncomingStream<'_, TcpListener>> for LocalAddr {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> LocalAddr {
        LocalAddr(stream.io().local_addr().ok())
    }
}

/// The local IP address of the connection a request came on, when the server recorded it.
pub fn local_ip(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<LocalAddr>>()
        .and_then(|ConnectInfo(LocalAddr(a))| a.map(|a| a.ip()))
}
