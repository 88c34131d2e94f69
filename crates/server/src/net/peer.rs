//! Who is at the other end of a request. Its own module, so that handlers (login's rate
//! limit, the WebSocket handshake, the SSE front) can name it without importing the listener.

use std::net::SocketAddr;
use std::sync::Weak;
use tokio::net::TcpStream;

/// The client end of a request: its address, and a handle on its TCP connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub address: SocketAddr,
    pub(crate) tcp: Weak<TcpStream>,
}
