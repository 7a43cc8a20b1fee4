//! Load generator integration tests: real load tests (goose, in-process) against the real API
//! spawned on port 0 over PostgreSQL and Redis seeded by the real seeder, and against a small
//! server that answers wrong bodies. One test binary for the crate.

mod helpers;
mod merge;
mod reference;
mod runs;
