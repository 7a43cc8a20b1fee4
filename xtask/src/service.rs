//! The stack's services: their names, their fixed start order, and the `STACK_SERVICES`
//! selection. Leaf module: imports nothing of this crate but `facts`.

use std::fmt;

use crate::facts::MAX_API_REPLICAS;

/// One of Prometheus' exporters, or Prometheus itself (Debian's packages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Monitor {
    /// prometheus-node-exporter.
    NodeExporter,
    /// prometheus-nginx-exporter.
    NginxExporter,
    /// prometheus-redis-exporter.
    RedisExporter,
    /// prometheus-postgres-exporter.
    PgExporter,
    /// prometheus.
    Prometheus,
}

impl Monitor {
    /// In start order; the first four are "the exporters".
    pub const ALL: [Monitor; 5] = [
        Monitor::NodeExporter,
        Monitor::NginxExporter,
        Monitor::RedisExporter,
        Monitor::PgExporter,
        Monitor::Prometheus,
    ];

    /// Its service name.
    pub fn name(self) -> &'static str {
        match self {
            Monitor::NodeExporter => "node_exporter",
            Monitor::NginxExporter => "nginx_exporter",
            Monitor::RedisExporter => "redis_exporter",
            Monitor::PgExporter => "pg_exporter",
            Monitor::Prometheus => "prometheus",
        }
    }

    /// The Debian package, which is also the program's name.
    pub fn program(self) -> &'static str {
        match self {
            Monitor::NodeExporter => "prometheus-node-exporter",
            Monitor::NginxExporter => "prometheus-nginx-exporter",
            Monitor::RedisExporter => "prometheus-redis-exporter",
            Monitor::PgExporter => "prometheus-postgres-exporter",
            Monitor::Prometheus => "prometheus",
        }
    }

    /// The variable that sets its port.
    pub fn port_var(self) -> &'static str {
        match self {
            Monitor::NodeExporter => "STACK_NODE_EXPORTER_PORT",
            Monitor::NginxExporter => "STACK_NGINX_EXPORTER_PORT",
            Monitor::RedisExporter => "STACK_REDIS_EXPORTER_PORT",
            Monitor::PgExporter => "STACK_PG_EXPORTER_PORT",
            Monitor::Prometheus => "STACK_PROMETHEUS_PORT",
        }
    }
}

/// A service of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// Our PostgreSQL cluster (the primary).
    Pg,
    /// Its opt-in streaming read replica.
    PgReplica,
    /// Our single Redis.
    Redis,
    /// The opt-in six-node Redis Cluster.
    RedisCluster,
    /// API replica N (1-9).
    Api(u8),
    /// NGINX, the edge.
    Nginx,
    /// An exporter or Prometheus.
    Monitor(Monitor),
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Service::Pg => f.write_str("pg"),
            Service::PgReplica => f.write_str("pg_replica"),
            Service::Redis => f.write_str("redis"),
            Service::RedisCluster => f.write_str("redis_cluster"),
            Service::Api(n) => write!(f, "api{n}"),
            Service::Nginx => f.write_str("nginx"),
            Service::Monitor(m) => f.write_str(m.name()),
        }
    }
}

/// Every service of a stack with `replicas` API replicas, in start order (`down` stops them in
/// reverse).
pub fn start_order(replicas: u8) -> Vec<Service> {
    let mut all = vec![Service::Pg, Service::PgReplica, Service::Redis, Service::RedisCluster];
    all.extend((1..=replicas).map(Service::Api));
    all.push(Service::Nginx);
    all.extend(Monitor::ALL.map(Service::Monitor));
    all
}

/// The services a `STACK_SERVICES` value names (space or comma separated), in start order.
pub fn select(spec: &str, replicas: u8) -> Result<Vec<Service>, String> {
    let mut want = Vec::new();
    for name in spec.split([' ', ',', '\t', '\n']).filter(|s| !s.is_empty()) {
        match name {
            "pg" => want.push(Service::Pg),
            "pg_replica" => want.push(Service::PgReplica),
            "redis" => want.push(Service::Redis),
            "redis_cluster" => want.push(Service::RedisCluster),
            "nginx" => want.push(Service::Nginx),
            "api" => want.extend((1..=replicas).map(Service::Api)),
            "exporters" => {
                want.extend(Monitor::ALL[..4].iter().map(|m| Service::Monitor(*m)));
            }
            _ => {
                if let Some(m) = Monitor::ALL.into_iter().find(|m| m.name() == name) {
                    want.push(Service::Monitor(m));
                } else if let Some(n) = api_number(name) {
                    if n > replicas {
                        return Err(format!(
                            "STACK_SERVICES names {name}, but STACK_API_REPLICAS={replicas}. \
                             Raise STACK_API_REPLICAS or drop {name}."
                        ));
                    }
                    want.push(Service::Api(n));
                } else {
                    return Err(format!(
                        "STACK_SERVICES='{spec}': unknown service '{name}'. Known: pg, pg_replica, \
                         redis, redis_cluster, api (all STACK_API_REPLICAS replicas), \
                         api1..api{replicas}, nginx, exporters (node_exporter nginx_exporter \
                         redis_exporter pg_exporter), prometheus."
                    ));
                }
            }
        }
    }
    let selected: Vec<Service> = start_order(replicas).into_iter().filter(|s| want.contains(s)).collect();
    if selected.is_empty() {
        return Err(format!(
            "STACK_SERVICES='{spec}' names no service. Known: pg, redis, redis_cluster, api, \
             api1..api{replicas}, nginx, exporters, prometheus."
        ));
    }
    Ok(selected)
}

/// N of a name `apiN` with N in 1..=9.
fn api_number(name: &str) -> Option<u8> {
    let digit = name.strip_prefix("api")?;
    let n: u8 = if digit.len() == 1 { digit.parse().ok()? } else { return None };
    (1..=MAX_API_REPLICAS).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_follows_the_start_order_not_the_spelling() {
        let got = select("prometheus,api2 pg  redis", 3).expect("valid");
        assert_eq!(got, vec![Service::Pg, Service::Redis, Service::Api(2), Service::Monitor(Monitor::Prometheus)]);
    }

    #[test]
    fn api_and_exporters_expand() {
        let got = select("exporters api", 2).expect("valid");
        let names: Vec<String> = got.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["api1", "api2", "node_exporter", "nginx_exporter", "redis_exporter", "pg_exporter"]);
    }

    #[test]
    fn unknown_and_out_of_range_names_are_refused() {
        assert!(select("pg bogus", 3).expect_err("bogus").contains("unknown service 'bogus'"));
        assert!(select("api4", 3).expect_err("api4").contains("STACK_API_REPLICAS=3"));
        assert!(select("api10", 9).is_err());
        assert!(select(" , ", 3).expect_err("empty").contains("names no service"));
    }
}
