//! The result-day hot spot: the students of a few schools (told first, or more eager) check at
//! once, so most lookups fall on a small set of IDs; the rest are uniform.

use std::sync::Arc;

use goose::goose::{GooseUser, Scenario, TransactionResult};

use super::{Plan, Target, fetch, plan_transaction};
use crate::request::Request;

/// The scenario.
pub fn scenario(plan: &Arc<Plan>) -> Scenario {
    Scenario::new("hot spot").register_transaction(plan_transaction!(plan, "look up a hot school's result", look_up))
}

async fn look_up(user: &mut GooseUser, plan: &Plan) -> TransactionResult {
    let id = plan.ids.hot_spot(&mut rand::rng());
    fetch(user, plan, Request::Result, Target::Student(id)).await
}
