//! API integration tests: the real API (spawned in-process on port 0) against the real
//! PostgreSQL and Redis of the native stack, seeded by the real seeder. Outages are made by
//! cutting a TCP proxy in front of a store. The fixtures are the workspace's `test-support`
//! crate's. One test binary for the crate.

mod factor;
mod helpers;
mod imported;
mod limits;
mod near_cache;
mod openapi;
mod operations;
mod outages;
mod reference;
mod replicas;
mod routes;
mod schema;
