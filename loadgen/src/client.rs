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

use std::time::Duration;

use goose::config::GooseConfiguration;
use reqwest::Client;

use crate::config::{DEFAULT_TIMEOUT_S, Options, positive_secs};
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
        })
    }

    /// A new client with its own connection pool.
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn build(&self) -> Result<Client, LoadgenError> {
        Client::builder()
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
#[derive(Debug, Clone)]
pub enum UserClients {
    /// One client, so one pool, for every user: thousands of users need tens of sockets.
    Shared(Client),
    /// A new client per user, like separate browsers.
    PerUser(ClientSettings),
}

impl UserClients {
    /// The clients of a run. One client is built now, so a failure shows before any user starts.
    ///
    /// # Errors
    /// When a client cannot be built.
    pub fn new(settings: ClientSettings, per_user: bool) -> Result<Self, LoadgenError> {
        let first = settings.build()?;
        Ok(if per_user { Self::PerUser(settings) } else { Self::Shared(first) })
    }

    /// The client for a user arriving now.
    ///
    /// # Errors
    /// When a per-user client cannot be built.
    pub fn for_user(&self) -> Result<Client, LoadgenError> {
        match self {
            Self::Shared(client) => Ok(client.clone()),
            Self::PerUser(settings) => settings.build(),
        }
    }
}
