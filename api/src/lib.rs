//! The results API: a stateless axum replica. Several run behind NGINX; each reads Redis (loaded
//! by the seeder), an in-process cache and PostgreSQL. `main.rs` parses the configuration and
//! calls [`startup::run`]; tests drive the same function on port 0.
//!
//! - [`config`]: flags and environment variables, validated into [`config::Settings`].
//! - [`startup`]: builds the shared state and runs both listeners until shutdown.
//! - [`state`]: what every handler shares ([`state::AppState`]), below the routers.
//! - [`server`]: the HTTP/1.1 accept loop with header limits and graceful shutdown.
//! - [`routes`]: public routes (results, alias, health, readiness, OpenAPI), JSON fallbacks,
//!   metrics.
//! - [`openapi`]: the OpenAPI document of the public routes (`api/openapi.json`), embedded.
//! - [`admin`]: the private admin port: `/metrics` and `/debug/pprof/profile`.
//! - [`lookup`]: the read path: near cache, Redis, in-process cache, PostgreSQL, and when each
//!   is used.
//! - [`failed_lookups`]: per-client and per-number limits of lookups that found nothing (429).
//! - [`near_cache`]: every published result in memory, kept coherent by Redis client tracking.
//! - [`stores`]: the Redis and PostgreSQL clients, every call bounded in time.
//! - [`pg_servers`]: the PostgreSQL primary and its read replicas: replicas first, health marks.
//! - [`directory`]: the completeness marker, schools, stream sizes and store health, refreshed.
//! - [`view`]: the JSON body of a result and its ETag.
//! - [`error`]: the one error type and its JSON envelope.
//! - [`telemetry`]: metric names, histogram buckets, the recorder, rate-limited warnings.

pub mod admin;
pub mod config;
pub mod directory;
pub mod error;
pub mod failed_lookups;
pub mod lookup;
pub mod near_cache;
pub mod openapi;
pub mod pg_servers;
pub mod routes;
pub mod server;
pub mod startup;
pub mod state;
pub mod stores;
pub mod telemetry;
pub mod view;
