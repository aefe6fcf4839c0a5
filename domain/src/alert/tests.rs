//! Given/when/then tests of the Alert aggregate.

use super::*;
use crate::Role;
use cqrs_es::test::TestFramework;
use serde_json::json;

fn framework() -> TestFramework<Alert> {
    TestFramework::with(())
}

fn spec() -> AlertSpec {
    AlertSpec {
        kind: "disk_space_low".into(),
        severity: Severity::Critical,
        subject: "node/a/disk".into(),
        message: "disk 95% used".into(),
        details: json!({"used_ratio": 0.95}),
        owner_id: None,
    }
}

fn raised(recurring: bool) -> AlertEvent {
    AlertEvent::AlertRaised { spec: spec(), recurring }
}

fn admin() -> Actor {
    Actor { id: Uuid::from_u128(1), role: Role::Admin }
}

fn resolved(by: Option<Uuid>) -> AlertEvent {
    AlertEvent::AlertResolved { by, note: None }
}

#[test]
fn an_alert_is_raised_once_while_it_is_active() {
    let raise = |recurring| AlertCommand::Raise { spec: spec(), recurring };
    framework().given_no_previous_events().when(raise(false)).then_expect_events(vec![raised(false)]);
    framework().given(vec![raised(true)]).when(raise(true)).then_expect_events(vec![]);
    let acknowledged = AlertEvent::AlertAcknowledged { by: admin().id, note: None };
    framework().given(vec![raised(true), acknowledged]).when(raise(true)).then_expect_events(vec![]);
}

#[test]
fn only_a_recurring_condition_comes_back_after_it_is_resolved() {
    let raise = |recurring| AlertCommand::Raise { spec: spec(), recurring };
    framework().given(vec![raised(true), resolved(None)]).when(raise(true)).then_expect_events(vec![raised(true)]);
    // A one-off fact (an event redelivered) does not reopen what people resolved.
    framework().given(vec![raised(false), resolved(Some(admin().id))]).when(raise(false)).then_expect_events(vec![]);
}

#[test]
fn people_acknowledge_and_resolve_with_a_note() {
    let acknowledge = |note: &str| AlertCommand::Acknowledge { by: admin(), note: Some(note.into()) };
    framework()
        .given(vec![raised(false)])
        .when(acknowledge(" looking "))
        .then_expect_events(vec![AlertEvent::AlertAcknowledged { by: admin().id, note: Some("looking".into()) }]);
    framework()
        .given(vec![raised(false), AlertEvent::AlertAcknowledged { by: admin().id, note: None }])
        .when(acknowledge("again"))
        .then_expect_events(vec![]);
    framework()
        .given(vec![raised(false), resolved(None)])
        .when(acknowledge("late"))
        .then_expect_error(AlertError::AlreadyResolved);
    framework().given_no_previous_events().when(acknowledge("what?")).then_expect_error(AlertError::NotFound);
    let long = "x".repeat(MAX_NOTE_CHARS + 1);
    framework().given(vec![raised(false)]).when(acknowledge(&long)).then_expect_error(AlertError::NoteTooLong);
    let resolve = AlertCommand::Resolve { by: Some(admin()), note: Some("freed space".into()) };
    framework()
        .given(vec![raised(false)])
        .when(resolve.clone())
        .then_expect_events(vec![AlertEvent::AlertResolved { by: Some(admin().id), note: Some("freed space".into()) }]);
    framework().given(vec![raised(false), resolved(None)]).when(resolve).then_expect_error(AlertError::AlreadyResolved);
}

#[test]
fn the_worker_resolving_twice_is_a_no_op() {
    let resolve = AlertCommand::Resolve { by: None, note: None };
    framework().given(vec![raised(true)]).when(resolve.clone()).then_expect_events(vec![resolved(None)]);
    framework().given(vec![raised(true), resolved(None)]).when(resolve.clone()).then_expect_events(vec![]);
    framework().given_no_previous_events().when(resolve).then_expect_events(vec![]);
}

#[test]
fn owners_and_admins_see_an_alert() {
    let owner = Uuid::from_u128(7);
    let mut alert = Alert::default();
    alert.apply(AlertEvent::AlertRaised { spec: AlertSpec { owner_id: Some(owner), ..spec() }, recurring: false });
    assert!(alert.visible_to(&admin()));
    assert!(alert.visible_to(&Actor { id: owner, role: Role::Trainer }));
    assert!(!alert.visible_to(&Actor { id: Uuid::from_u128(8), role: Role::Trainer }));
    assert!(!Alert::default().visible_to(&admin()), "a never raised alert is nobody's");
    assert_eq!(alert_id("training_failed/x/1"), alert_id("training_failed/x/1"));
    assert_ne!(alert_id("training_failed/x/1"), alert_id("training_failed/x/2"));
}
