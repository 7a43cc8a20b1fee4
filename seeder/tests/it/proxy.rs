//! A small TCP proxy in front of the real Redis that a test can close (every connection dropped,
//! new ones refused) and open again: Redis "goes down" for the seeder without touching the
//! Redis other tests share.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The proxy handle; the proxy stops with the test's runtime.
pub struct Proxy {
    addr: SocketAddr,
    closed: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1:0 forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let closed = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let proxy = Self { addr, closed: closed.clone(), generation: generation.clone() };
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else { return };
                if closed.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(mut server) = TcpStream::connect(target).await else { continue };
                let mut killed = generation.subscribe();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = killed.changed() => {}
                    }
                });
            }
        });
        proxy
    }

    /// A Redis URL pointing at the proxy instead of `url`'s server.
    pub fn redis_url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Drops every connection and refuses new ones.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
    }
}

/// The `host:port` of a `redis://host:port` URL without credentials.
pub fn redis_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    authority.parse().expect("REDIS_URL has a numeric host:port without credentials")
}
