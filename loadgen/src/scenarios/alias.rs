//! The reference design's path, `/student/{id}`, so its load scripts work unchanged: a seeded
//! student, uniformly.

use std::sync::Arc;

use goose::goose::{GooseUser, Scenario, TransactionResult};

use super::{Plan, Target, fetch, plan_transaction};
use crate::request::Request;

/// The scenario.
pub fn scenario(plan: &Arc<Plan>) -> Scenario {
    Scenario::new("alias path").register_transaction(plan_transaction!(plan, "look up by alias path", look_up))
}

async fn look_up(user: &mut GooseUser, plan: &Plan) -> TransactionResult {
    let id = plan.ids.uniform(&mut rand::rng());
    fetch(user, plan, Request::Alias, Target::Student(id)).await
}
