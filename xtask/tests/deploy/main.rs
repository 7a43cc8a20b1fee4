//! The deployment files checked against the repository, without a Docker engine or a cluster:
//! docker-compose.yml and the Dockerfile ([`compose`]), the Kubernetes manifests in deploy/k8s
//! ([`k8s`]). One test binary (it links faster than two); `cargo test -p xtask --test deploy
//! compose::` or `k8s::` runs one half.
//!
//! The tools they need (docker-compose, kubectl) are installed with apt when missing, as
//! `cargo xtask install` does; the binaries' `--help` comes from target/debug (built when missing).

mod compose;
mod k8s;
mod support;
