//! A student looking up their own result: uniform over the seeded IDs, and now and then
//! refreshing the page (the same ID again) instead of handing the device to the next student.

use std::sync::Arc;

use goose::goose::{GooseUser, Scenario, TransactionResult};
use rand::Rng;

use super::{Plan, Target, fetch, plan_transaction};
use crate::request::Request;

/// The student a user is.
#[derive(Debug, Clone, Copy)]
struct Student {
    id: u32,
}

/// The scenario (its user arrives with [`arrive`]).
pub fn scenario(plan: &Arc<Plan>) -> Scenario {
    Scenario::new("student").register_transaction(plan_transaction!(plan, "look up own result", look_up))
}

/// A user arrives as a student with an ID of their own.
pub fn arrive(user: &mut GooseUser, plan: &Plan) {
    user.set_session_data(Student { id: plan.ids.uniform(&mut rand::rng()) });
}

/// One lookup: a refresh of the same result, or the next student's own.
async fn look_up(user: &mut GooseUser, plan: &Plan) -> TransactionResult {
    let student = user.get_session_data::<Student>().copied().unwrap_or(Student { id: 0 });
    let id = {
        let mut rng = rand::rng();
        let refresh = student.id != 0 && rng.random_range(0..100u8) < plan.refresh_percent;
        if refresh { student.id } else { plan.ids.uniform(&mut rng) }
    };
    if id != student.id {
        user.set_session_data(Student { id });
    }
    fetch(user, plan, Request::Result, Target::Student(id)).await
}
