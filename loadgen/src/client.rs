//! The users' HTTP clients: one shared connection pool, or one per user (`--client-per-user`).
//!
//! goose builds its clients without a pool idle timeout of our choosing (reqwest keeps an idle
//! connection 90 s). A server closes an idle keep-alive connection on its own clock (NGINX here
//! after `keepalive_timeout 30s`); a request that picks such a connection at the moment the
//! server closes it is reset before any answer ("client error (SendRequest)"), and reqwest does
//! not retry it because it was already written. One request in 250,457 of a full drill failed so,
//! a scratch client 1–13 of 6,000 against `keepalive_timeout 1s`, and none once the pool dropped
//! its idle connections before the server did. So this crate builds the clients itself, with
//! [`Options::pool_idle_secs`](crate::config::Options::pool_idle_secs) below the server's timeout,
//! and hands one to every user as it arrives.
//!
//! Each client is bound to a loopback source address of its own (`--source-addresses`), users
//! taking them in turn: NGINX limits each client address (docs/edge.md), and one address for
//! every simulated user would be one NAT bigger than any school's.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use goose::config::GooseConfiguration;
use reqwest::Client;

use crate::config::{DEFAULT_HOST, DEFAULT_TIMEOUT_S, Options, positive_secs};
use crate::error::LoadgenError;

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("loadgen/", env!("CARGO_PKG_VERSION"));

/// What every user's client is built with.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Per-request timeout (goose's `--timeout`).
    pub timeout: Duration,
    /// How long a pooled connection may sit idle before the client closes it.
    pub pool_idle: Duration,
    /// Accept gzip-encoded answers (goose's `--no-gzip` turns it off).
    pub gzip: bool,
    /// Accept invalid TLS certificates (goose's `--accept-invalid-certs`).
    pub accept_invalid_certs: bool,
    /// Source addresses to spread the users over (0: the system's choice).
    pub source_addresses: u32,
}

/// The first source address; the n-th (from 0) is this plus n. 127.0.0.x is left to the servers.
pub const FIRST_SOURCE_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 1, 0, 1);

/// The `slot`-th source address (taken modulo `count`); None when `count` is 0.
#[must_use]
pub fn source_address(slot: usize, count: u32) -> Option<Ipv4Addr> {
    let count = usize::try_from(count).ok().filter(|c| *c > 0)?;
    let offset = u32::try_from(slot % count).ok()?;
    Some(Ipv4Addr::from(u32::from(FIRST_SOURCE_ADDRESS).saturating_add(offset)))
}

/// Whether the target is an IPv4 loopback address: only then can a 127.x source reach it.
fn loopback_host(host: &str) -> bool {
    reqwest::Url::parse(host)
        .ok()
        .and_then(|url| url.host_str().and_then(|h| h.parse::<Ipv4Addr>().ok()))
        .is_some_and(|ip| ip.is_loopback())
}

impl ClientSettings {
    /// The settings of a run: goose's client flags and this crate's pool options.
    ///
    /// # Errors
    /// When goose's `--timeout` is not a positive number of seconds.
    pub fn new(goose: &GooseConfiguration, options: &Options) -> Result<Self, LoadgenError> {
        let text = goose.timeout.as_deref().unwrap_or(DEFAULT_TIMEOUT_S);
        let timeout = positive_secs(text).ok_or_else(|| {
            LoadgenError::Config(format!("--timeout {text:?}: expected a positive number of seconds"))
        })?;
        Ok(Self {
            timeout,
            pool_idle: Duration::from_secs_f64(options.pool_idle_secs),
            gzip: !goose.no_gzip,
            accept_invalid_certs: goose.accept_invalid_certs,
            source_addresses: if loopback_host(goose.host.as_deref().unwrap_or(DEFAULT_HOST)) {
                options.source_addresses
            } else {
                0
            },
        })
    }

    /// A new client with its own connection pool, its connections from `source` (None: the
    /// system's choice).
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn build(&self, source: Option<Ipv4Addr>) -> Result<Client, LoadgenError> {
        Client::builder()
            .local_address(source.map(IpAddr::V4))
            .user_agent(USER_AGENT)
            .timeout(self.timeout)
            .pool_idle_timeout(self.pool_idle)
            .gzip(self.gzip)
            .tls_danger_accept_invalid_certs(self.accept_invalid_certs)
            .build()
            .map_err(|e| LoadgenError::Config(format!("cannot build the HTTP client: {e}")))
    }
}

/// Where users get their client from.
#[derive(Debug)]
pub enum UserClients {
    /// One client, so one pool, per source address, shared by the users of that address:
    /// thousands of users need tens of sockets. Only as many as the run has users are built
    /// before it starts (a client costs ~17 ms of TLS setup in a debug build: 256 of them 4 s);
    /// any other is built when its first user arrives (goose test plans, whose users are not
    /// known here). Building during the ramp instead blocked the runtime: a drill's ramp-up saw
    /// 5 s timeouts.
    Shared(ClientSettings, Vec<OnceLock<Client>>, AtomicUsize),
    /// A new client per user, like separate browsers, from the source addresses in turn.
    PerUser(ClientSettings, AtomicUsize),
}

impl UserClients {
    /// The clients of a run of `users` users. Those are built now (one when each user has its
    /// own), so a failure shows before any user starts.
    ///
    /// # Errors
    /// When a client cannot be built.
    pub fn new(settings: ClientSettings, per_user: bool, users: usize) -> Result<Self, LoadgenError> {
        if per_user {
            settings.build(source_address(0, settings.source_addresses))?;
            return Ok(Self::PerUser(settings, AtomicUsize::new(0)));
        }
        let clients: Vec<OnceLock<Client>> = (0..settings.source_addresses.max(1)).map(|_| OnceLock::new()).collect();
        for (slot, cell) in clients.iter().enumerate().take(users.max(1)) {
            let _ = cell.set(settings.build(source_address(slot, settings.source_addresses))?);
        }
        Ok(Self::Shared(settings, clients, AtomicUsize::new(0)))
    }

    /// The client for a user arriving now: the next source address's.
    ///
    /// # Errors
    /// When a per-user client cannot be built.
    pub fn for_user(&self) -> Result<Client, LoadgenError> {
        match self {
            Self::Shared(settings, clients, next) => {
                let slot = next.fetch_add(1, Ordering::Relaxed) % clients.len().max(1);
                let cell = clients.get(slot).ok_or_else(|| LoadgenError::Config("no HTTP client".to_owned()))?;
                if let Some(client) = cell.get() {
                    return Ok(client.clone());
                }
                // Two users arriving at once may both build it; one of the two is kept.
                let built = settings.build(source_address(slot, settings.source_addresses))?;
                Ok(cell.get_or_init(|| built).clone())
            }
            Self::PerUser(settings, next) => {
                settings.build(source_address(next.fetch_add(1, Ordering::Relaxed), settings.source_addresses))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_take_the_source_addresses_in_turn() {
        assert_eq!(source_address(0, 256), Some(Ipv4Addr::new(127, 1, 0, 1)));
        assert_eq!(source_address(255, 256), Some(Ipv4Addr::new(127, 1, 1, 0)));
        assert_eq!(source_address(256, 256), Some(Ipv4Addr::new(127, 1, 0, 1)), "round and round");
        assert_eq!(source_address(7, 0), None, "0: the system's choice");
        let last = usize::try_from(crate::config::MAX_SOURCE_ADDRESSES - 1).expect("fits");
        assert!(source_address(last, u32::MAX).is_some_and(|ip| ip.is_loopback()), "still loopback");
    }

    #[test]
    fn only_an_ipv4_loopback_host_gets_source_addresses() {
        assert!(loopback_host("http://127.0.0.1:8080") && loopback_host("http://127.9.9.9"));
        assert!(!loopback_host("http://localhost:8080") && !loopback_host("https://results.example"));
        assert!(!loopback_host("http://10.0.0.5:8080") && !loopback_host("http://[::1]:8080"));
    }
}
