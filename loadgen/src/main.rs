//! The load generator binary. The goose scenarios are built in the load-generator issue; until
//! then this binary only states what it will do, so the workspace layout is already the final one.

use std::process::ExitCode;

use results_core::DatasetSpec;

fn main() -> ExitCode {
    let spec = DatasetSpec::default();
    eprintln!(
        "loadgen: not built yet (the load-generator issue adds the goose scenarios). It will request \
         the default data set's IDs {}..={} without asking any database.",
        spec.ids().start(),
        spec.ids().end()
    );
    ExitCode::from(2)
}
