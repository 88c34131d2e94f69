//! A TCP proxy in front of a server: clients connect to it, and the test can sever every
//! connection at once, as a network failure would, while the server stays up.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    address: SocketAddr,
    links: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
    refusing: Arc<AtomicBool>,
}

impl Proxy {
    /// Listens on `127.0.0.1:0` and forwards each connection to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let address = listener.local_addr().expect("proxy address");
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accepted = links.clone();
        let refusing = Arc::new(AtomicBool::new(false));
        let refuse = refusing.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if refuse.load(Ordering::Acquire) {
                    drop(client);
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut links = accepted.lock().unwrap_or_else(PoisonError::into_inner);
                links.retain(|l| !l.is_finished());
                links.push(link.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            address,
            links,
            accept,
            refusing,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://` + the proxy's address + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    /// Drops every connection open through the proxy: both ends see their connection end
    /// with no close frame or goodbye from the other; new connections are still accepted.
    pub fn cut(&self) {
        let links = std::mem::take(&mut *self.links.lock().unwrap_or_else(PoisonError::into_inner));
        for link in links {
            link.abort();
        }
    }
}

impl Proxy {
    /// Cuts every connection and refuses new ones until [`Proxy::heal`]: the far side is
    /// unreachable, as behind a broken link.
    pub fn isolate(&self) {
        self.refusing.store(true, Ordering::Release);
        self.cut();
    }

    /// Accepts connections again after [`Proxy::isolate`].
    pub fn heal(&self) {
        self.refusing.store(false, Ordering::Release);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
