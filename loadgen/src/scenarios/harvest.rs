//! A harvester: walks the seeded IDs in order, each once per pass, shared by all its users, as
//! fast as it is let (the drill's harvest phase runs it with no think time from one address).
//! Every answer but the student's result is a failure, so results harvested = requests - failures.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use goose::goose::{GooseUser, Scenario, TransactionResult};

use super::{Plan, Target, fetch, plan_transaction};
use crate::request::Request;

/// The scenario.
pub fn scenario(plan: &Arc<Plan>) -> Scenario {
    Scenario::new("harvest").register_transaction(plan_transaction!(plan, "take the next id", look_up))
}

async fn look_up(user: &mut GooseUser, plan: &Plan) -> TransactionResult {
    let id = plan.ids.walk(plan.harvest_next.fetch_add(1, Ordering::Relaxed));
    fetch(user, plan, Request::Result, Target::Student(id)).await
}
