//! Seeder integration tests against the real PostgreSQL and Redis of the native stack
//! (`scripts/test.sh` starts them and exports `DATABASE_URL` and `REDIS_URL`). One test binary;
//! each test gets a fresh database and a random Redis key prefix, so tests run in parallel and
//! leave the developer's own data alone.

mod corrections;
mod failures;
mod helpers;
mod import;
mod interrupted;
mod reference;
mod round_trip;
