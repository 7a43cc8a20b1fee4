//! The results API binary. The axum replicas are built in the API issue; until then this binary
//! only states what it will serve, so the workspace layout is already the final one.

use std::process::ExitCode;

use results_core::{DatasetSpec, StudentId};

fn main() -> ExitCode {
    let spec = DatasetSpec::default();
    eprintln!(
        "api: not built yet (the API issue adds the axum replicas). It will serve \
         GET /v1/results/{{id}} for registration numbers {}..={} (the default data set: {}..={}).",
        StudentId::MIN,
        StudentId::MAX,
        spec.ids().start(),
        spec.ids().end()
    );
    ExitCode::from(2)
}
