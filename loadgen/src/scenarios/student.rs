//! A student looking up their own result: uniform over the seeded IDs, and now and then
//! refreshing the page (the same ID again) instead of handing the device to the next student.

use std::sync::Arc;

use goose::goose::{GooseUser, Scenario, Transaction, TransactionFunction, TransactionResult};
use rand::Rng;

use super::{Plan, Request, Target, fetch, plan_transaction};

/// The student a user is, and how often they refresh.
#[derive(Debug, Clone, Copy)]
struct Student {
    id: u32,
    refresh_percent: u8,
}

/// The scenario, refreshing `refresh_percent` percent of the time.
pub fn scenario(plan: &Arc<Plan>, refresh_percent: u8) -> Scenario {
    let arriving = Arc::clone(plan);
    let arrive: TransactionFunction = Arc::new(move |user| {
        let id = arriving.ids.uniform(&mut rand::rng());
        user.set_session_data(Student { id, refresh_percent });
        Box::pin(async { Ok(()) })
    });
    Scenario::new("student")
        .register_transaction(Transaction::new(arrive).set_name("student arrives").set_on_start())
        .register_transaction(plan_transaction!(plan, "look up own result", look_up))
}

/// One lookup: a refresh of the same result, or the next student's own.
async fn look_up(user: &mut GooseUser, plan: &Plan) -> TransactionResult {
    let student = user.get_session_data::<Student>().copied().unwrap_or(Student { id: 0, refresh_percent: 0 });
    let id = {
        let mut rng = rand::rng();
        let refresh = student.id != 0 && rng.random_range(0..100u8) < student.refresh_percent;
        if refresh { student.id } else { plan.ids.uniform(&mut rng) }
    };
    if id != student.id {
        user.set_session_data(Student { id, ..student });
    }
    fetch(user, plan, Request::Result, Target::Student(id)).await
}
