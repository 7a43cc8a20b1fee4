//! Mistyped registration numbers: half malformed (letters, wrong length, out of range: 400
//! `invalid_id` expected), half well-formed but unknown (404 `unknown_id` expected). The expected
//! status with the expected error body is a success.

use std::sync::Arc;

use goose::goose::{GooseUser, Scenario, TransactionResult};
use rand::Rng;

use super::{Plan, Target, fetch, plan_transaction};
use crate::ids::malformed;
use crate::request::Request;

/// The scenario.
pub fn scenario(plan: &Arc<Plan>) -> Scenario {
    Scenario::new("wrong id").register_transaction(plan_transaction!(plan, "mistype an id", look_up))
}

async fn look_up(user: &mut GooseUser, plan: &Plan) -> TransactionResult {
    let (request, target) = {
        let mut rng = rand::rng();
        match plan.ids.unknown(&mut rng) {
            Some(id) if rng.random_bool(0.5) => (Request::Unknown, Target::Unknown(id)),
            _ => (Request::Malformed, Target::Malformed(malformed(&mut rng))),
        }
    };
    fetch(user, plan, request, target).await
}
