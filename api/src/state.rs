//! The state every handler shares: settings, the read path, the stores, the metrics registry.
//! Its own module, below the routers and start-up, so `routes` and `admin` name it without
//! depending on `startup`, which builds the routers.

use std::sync::Arc;

use axum::http::HeaderValue;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Settings;
use crate::directory::Directory;
use crate::failed_lookups::FailedLookups;
use crate::lookup::Lookup;
use crate::near_cache::NearCache;
use crate::pg_servers::PgServers;
use crate::stores::RedisTier;
use crate::telemetry;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The shared parts.
pub struct Inner {
    /// Settings.
    pub settings: Settings,
    /// The read path.
    pub lookup: Lookup,
    /// The failed-lookup limits (per client, per number).
    pub failed_lookups: FailedLookups,
    /// The near cache (inside the read path too): its state for `/readyz`, its upkeep task.
    pub near: Arc<NearCache>,
    /// Marker, schools, stream sizes, store health.
    pub directory: Arc<Directory>,
    /// Redis.
    pub redis: RedisTier,
    /// PostgreSQL: the primary and its read replicas.
    pub pg: PgServers,
    /// The metrics registry.
    pub metrics: PrometheusHandle,
    /// `Cache-Control` of result responses.
    pub cache_control: HeaderValue,
    /// Says, at most every 10 s, that a data set requiring a second factor meets no key.
    pub factor_key_warning: telemetry::RateLimitedWarning,
}

impl std::ops::Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Connects the stores (lazily: neither needs to be up) and builds the read path.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        // The recorder first: the near cache registers its metrics' handles once, on creation.
        let metrics = telemetry::recorder();
        let redis = RedisTier::connect(&settings)?;
        let pg = PgServers::connect(&settings)?;
        let directory = Arc::new(Directory::default());
        let near = Arc::new(NearCache::new(&settings)?);
        let lookup = Lookup::new(&settings, redis.clone(), pg.clone(), Arc::clone(&directory), Arc::clone(&near));
        let failed_lookups = FailedLookups::new(
            settings.failed_lookups_per_client,
            settings.factor_tries_per_number,
            settings.trusted_proxies.clone(),
            redis.clone(),
            &settings.layout,
        );
        let cache_control = HeaderValue::from_str(&format!("public, max-age={}", settings.http_max_age_s))?;
        Ok(Self(Arc::new(Inner {
            settings,
            lookup,
            failed_lookups,
            near,
            directory,
            redis,
            pg,
            metrics,
            cache_control,
            factor_key_warning: telemetry::RateLimitedWarning::new(std::time::Duration::from_secs(10)),
        })))
    }
}
