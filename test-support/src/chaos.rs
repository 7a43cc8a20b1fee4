//! A small TCP proxy in front of a real server: an outage made by cutting a real connection, for
//! one test only, without stopping the server other tests share (as crates.io's
//! `chaosproxy.rs`). A test cuts it (every connection closed, new ones refused), slows it down,
//! restores it, and reads how many bytes reached the server (did a request touch this store?).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::urls::{server_addr, with_addr};

/// A running proxy; it stops with the test's runtime.
pub struct ChaosProxy {
    addr: SocketAddr,
    /// The server's URL, to hand out the same URL pointed at the proxy.
    server_url: String,
    cut: Arc<AtomicBool>,
    /// Bumped by [`ChaosProxy::cut`]: every open connection watches it and closes.
    generation: watch::Sender<u64>,
    towards_server: Arc<TowardsServer>,
}

/// What a proxy does to the traffic towards the server, shared by all its connections.
#[derive(Default)]
struct TowardsServer {
    delay_ms: AtomicU64,
    bytes: AtomicU64,
}

impl ChaosProxy {
    /// Starts a proxy on 127.0.0.1:0 in front of the server of `url` (a store's connection URL).
    pub async fn start(url: &str) -> Self {
        let target = server_addr(url);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let towards_server = Arc::new(TowardsServer::default());
        let proxy = Self {
            addr,
            server_url: url.to_owned(),
            cut: cut.clone(),
            generation: generation.clone(),
            towards_server: Arc::clone(&towards_server),
        };
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                if cut.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target).await else { continue };
                let killed = generation.subscribe();
                tokio::spawn(pipe(client, server, killed, Arc::clone(&towards_server)));
            }
        });
        proxy
    }

    /// The address to connect to instead of the server.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL the proxy was started with, pointed at the proxy (credentials, database kept).
    pub fn url(&self) -> String {
        with_addr(&self.server_url, self.addr)
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Delays every chunk forwarded to the server by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.towards_server.delay_ms.store(millis, Ordering::SeqCst);
    }

    /// Bytes forwarded to the server so far.
    pub fn bytes_to_server(&self) -> u64 {
        self.towards_server.bytes.load(Ordering::SeqCst)
    }
}

/// Copies both ways until either side closes or the proxy is cut; counts (and delays) what goes
/// to the server. Not `copy_bidirectional`: that neither counts nor delays.
async fn pipe(client: TcpStream, server: TcpStream, mut killed: watch::Receiver<u64>, towards: Arc<TowardsServer>) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = forward(client_read, server_write, Some(&towards)) => {}
        () = forward(server_read, client_write, None) => {}
        _ = killed.changed() => {}
    }
}

/// Copies `from` into `to` until either side closes; towards the server, each chunk waits for
/// the set delay and is counted.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, towards_server: Option<&TowardsServer>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(towards) = towards_server {
            let delay = towards.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            towards.bytes.fetch_add(n as u64, Ordering::SeqCst);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on 127.0.0.1:0; its URL.
    async fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the echo server");
        let url = format!("tcp://{}", listener.local_addr().expect("its address"));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.into_split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        url
    }

    async fn echo(stream: &mut TcpStream, text: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(text).await?;
        let mut back = vec![0u8; text.len()];
        stream.read_exact(&mut back).await?;
        Ok(back)
    }

    #[tokio::test]
    async fn a_cut_closes_open_connections_and_refuses_new_ones_until_restored() {
        let proxy = ChaosProxy::start(&echo_server().await).await;
        let mut open = TcpStream::connect(proxy.addr()).await.expect("connect through the proxy");
        assert_eq!(echo(&mut open, b"hello").await.expect("echoed"), b"hello");
        assert_eq!(proxy.bytes_to_server(), 5, "what went to the server is counted");

        proxy.cut();
        assert!(echo(&mut open, b"again").await.is_err(), "the open connection is closed");
        let mut refused = TcpStream::connect(proxy.addr()).await.expect("the listener still accepts");
        assert!(echo(&mut refused, b"new").await.is_err(), "a new connection is closed at once");

        proxy.restore();
        let mut back = TcpStream::connect(proxy.addr()).await.expect("connect again");
        assert_eq!(echo(&mut back, b"back").await.expect("echoed"), b"back");
    }

    #[tokio::test]
    async fn a_delay_holds_each_chunk_towards_the_server() {
        let proxy = ChaosProxy::start(&echo_server().await).await;
        proxy.set_delay(Duration::from_millis(200));
        let mut stream = TcpStream::connect(proxy.addr()).await.expect("connect through the proxy");
        let started = tokio::time::Instant::now();
        assert_eq!(echo(&mut stream, b"slow").await.expect("echoed"), b"slow");
        assert!(started.elapsed() >= Duration::from_millis(200), "took {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn the_proxy_url_is_the_servers_url_pointed_at_the_proxy() {
        let proxy = ChaosProxy::start("postgres://u:p@127.0.0.1:1/db").await;
        assert_eq!(proxy.url(), format!("postgres://u:p@{}/db", proxy.addr()));
    }
}
