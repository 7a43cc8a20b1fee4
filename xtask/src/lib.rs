//! The project's automation behind `cargo xtask` (the rust-analyzer model: typed, tested Rust
//! instead of shell): the native stack, benchmarks, the capacity model, the configuration
//! reference, fuzzing, the web assets' stamps and the drill's probes. The commands and their
//! options: `cargo xtask --help`, or docs/reference/xtask.md (generated from it).
//!
//! Why our own supervision rather than supervisord, s6 or `systemd --user`: the services must
//! outlive the command and be found again by the next one through their pid files and data
//! folders (PostgreSQL, Redis and NGINX daemonise themselves and keep their own pid files), the
//! machines it runs on (CI, containers) have no systemd session, and a supervisor daemon would
//! add a long-running process and, for supervisord, Python, while the bootstrap (initdb, roles,
//! cluster creation, the replica's clone) would still be ours. What a supervisor would give is a
//! pid file checked against `/proc`, a detached launch and SIGTERM-then-SIGKILL: `supervise`,
//! ~300 lines, with `setsid` and rustix for the parts std lacks.
//!
//! Modules, leaves first:
//! - [`facts`]: every `STACK_*` variable with its default and help, fixed values, repo paths.
//! - [`service`]: the services, their start order, the `STACK_SERVICES` selection.
//! - [`config`]: the variables read, validated (loopback only, no shared ports) and typed.
//! - [`supervise`]: pid files checked against `/proc`, detached launch, SIGTERM then SIGKILL,
//!   waits with a deadline, log tails.
//! - [`net`]: port probes, a small HTTP/1.0 client and a small Redis client for health checks.
//! - [`apt`]: missing Debian packages, installed without starting system services.
//! - [`pg`]: PostgreSQL (initdb, settings, role and database) and its streaming read replica.
//! - [`redis`]: the single Redis and the six-node Redis Cluster.
//! - [`api`]: the API replicas api1..apiN.
//! - [`nginx`]: the edge, rendered from nginx/nginx.conf.template, reloaded on change.
//! - [`monitor`]: Prometheus (configuration and targets written per stack) and four exporters.
//! - [`capacity`]: `cargo xtask capacity-model`, the result-day capacity model of
//!   docs/capacity-model.md, from the benchmarks' outputs.
//! - [`stack`]: the commands, dispatching to the services in order under the folder's lock.
//! - [`reference`]: docs/reference/, every binary's `--help`, generated and checked.
//! - [`bench`]: the benchmarks, each against the ceiling of its own shape, medians to docs/bench/.
//! - [`probe`]: raw-socket clients against our own edge: `cargo xtask slowloris` (the drill's
//!   slow clients) and `cargo xtask raw-http send | idle` (the hostile test's requests).
//! - [`fuzz`]: `cargo xtask fuzz`, fuzz/'s targets one after another with libFuzzer via
//!   cargo-fuzz, and the parsing of libFuzzer's output.
//! - [`stamp_web`]: `cargo xtask stamp-web`, the assets' content stamps in web/index.html.
//! - [`deps`]: dependencies declared and never used (cargo-machete's check, run by a test).
//! - [`suite`]: `cargo xtask test`, the test command: stores up, sweep, one build, then
//!   `cargo test` and the script tests side by side in lanes.
//! - [`cli`]: the command line and exit statuses.

pub mod api;
pub mod apt;
pub mod bench;
pub mod capacity;
pub mod cli;
pub mod config;
pub mod deps;
pub mod facts;
pub mod fuzz;
pub mod monitor;
pub mod net;
pub mod nginx;
pub mod pg;
pub mod probe;
pub mod redis;
pub mod reference;
pub mod service;
pub mod stack;
pub mod stamp_web;
pub mod suite;
pub mod supervise;
