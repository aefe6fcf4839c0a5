//! Given/when/then tests of the User aggregate.

use super::*;
use crate::values::{DisplayName, Email, Password, Username};
use chrono::{Duration, TimeZone};
use cqrs_es::test::TestFramework;

/// A transparent stand-in for argon2: the decisions, not the hash, are under test here.
struct PlainHasher;

#[async_trait::async_trait]
impl UserServices for PlainHasher {
    async fn hash_password(&self, password: &Password) -> Result<String, UserError> {
        Ok(format!("hashed:{}", password.expose()))
    }
    async fn verify_password(&self, password: &Password, hash: &str) -> bool {
        hash == format!("hashed:{}", password.expose())
    }
}

fn framework() -> TestFramework<User> {
    TestFramework::with(Box::new(PlainHasher) as Box<dyn UserServices>)
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn ann() -> Username {
    Username::parse("ann").unwrap()
}

fn registered() -> UserEvent {
    UserEvent::UserRegistered {
        user_id: user_id_for(&ann()),
        username: ann(),
        email: Email::parse("ann@example.com").unwrap(),
        display_name: "Ann".into(),
        role: Role::Trainer,
        password_hash: "hashed:correct horse".into(),
    }
}

fn pw(p: &str) -> Password {
    Password::parse(p).unwrap()
}

fn session(id: u128) -> UserEvent {
    UserEvent::SessionStarted {
        session_id: Uuid::from_u128(id),
        expires_at: t0() + Duration::days(1),
        user_agent: None,
        address: None,
    }
}

#[tokio::test]
async fn registering_a_new_user_records_the_hash_not_the_password() {
    framework()
        .given_no_previous_events()
        .when_async(UserCommand::Register {
            username: ann(),
            email: Email::parse("ann@example.com").unwrap(),
            display_name: Some(DisplayName::parse("Ann").unwrap()),
            password: pw("correct horse"),
            role: Role::Trainer,
        })
        .await
        .then_expect_events(vec![registered()]);
}

#[tokio::test]
async fn registering_an_existing_username_is_refused() {
    framework()
        .given(vec![registered()])
        .when_async(UserCommand::Register {
            username: ann(),
            email: Email::parse("other@example.com").unwrap(),
            display_name: None,
            password: pw("whatever123"),
            role: Role::User,
        })
        .await
        .then_expect_error(UserError::AlreadyExists);
}

#[tokio::test]
async fn a_profile_update_records_only_what_changed() {
    framework()
        .given(vec![registered()])
        .when_async(UserCommand::UpdateProfile {
            email: Some(Email::parse("ann@example.com").unwrap()),
            display_name: Some(DisplayName::parse("Ann B.").unwrap()),
        })
        .await
        .then_expect_events(vec![UserEvent::ProfileUpdated { email: None, display_name: Some("Ann B.".into()) }]);
}

#[tokio::test]
async fn a_profile_update_of_an_unknown_user_is_not_found() {
    framework()
        .given_no_previous_events()
        .when_async(UserCommand::UpdateProfile { email: None, display_name: None })
        .await
        .then_expect_error(UserError::NotFound);
}

#[tokio::test]
async fn login_with_the_right_password_starts_a_session() {
    let expires_at = t0() + Duration::days(1);
    framework()
        .given(vec![registered()])
        .when_async(UserCommand::StartSession {
            password: pw("correct horse"),
            session_id: Uuid::from_u128(1),
            now: t0(),
            expires_at,
            user_agent: None,
            address: None,
        })
        .await
        .then_expect_events(vec![session(1)]);
}

#[tokio::test]
async fn login_with_a_wrong_password_or_unknown_user_is_invalid_credentials() {
    let login = || UserCommand::StartSession {
        password: pw("wrong password"),
        session_id: Uuid::from_u128(1),
        now: t0(),
        expires_at: t0(),
        user_agent: None,
        address: None,
    };
    framework().given(vec![registered()]).when_async(login()).await.then_expect_error(UserError::InvalidCredentials);
    framework().given_no_previous_events().when_async(login()).await.then_expect_error(UserError::InvalidCredentials);
}

#[tokio::test]
async fn a_deactivated_user_cannot_log_in() {
    framework()
        .given(vec![registered(), UserEvent::UserDeactivated])
        .when_async(UserCommand::StartSession {
            password: pw("correct horse"),
            session_id: Uuid::from_u128(1),
            now: t0(),
            expires_at: t0() + Duration::days(1),
            user_agent: None,
            address: None,
        })
        .await
        .then_expect_error(UserError::Inactive);
}

#[tokio::test]
async fn refreshing_rotates_to_the_next_generation() {
    let expires_at = t0() + Duration::days(2);
    framework()
        .given(vec![registered(), session(1)])
        .when_async(UserCommand::RefreshSession {
            session_id: Uuid::from_u128(1),
            generation: 0,
            now: t0(),
            expires_at,
        })
        .await
        .then_expect_events(vec![UserEvent::SessionRefreshed {
            session_id: Uuid::from_u128(1),
            generation: 1,
            expires_at,
            refreshed_at: Some(t0()),
        }]);
}

#[tokio::test]
async fn a_rotated_refresh_token_is_detected_as_reuse() {
    let refreshed = UserEvent::SessionRefreshed {
        session_id: Uuid::from_u128(1),
        generation: 1,
        expires_at: t0() + Duration::days(1),
        refreshed_at: None,
    };
    framework()
        .given(vec![registered(), session(1), refreshed])
        .when_async(UserCommand::RefreshSession {
            session_id: Uuid::from_u128(1),
            generation: 0,
            now: t0(),
            expires_at: t0() + Duration::days(1),
        })
        .await
        .then_expect_error(UserError::RefreshTokenReused);
}

#[tokio::test]
async fn an_expired_or_ended_session_cannot_be_refreshed() {
    let refresh = |now| UserCommand::RefreshSession {
        session_id: Uuid::from_u128(1),
        generation: 0,
        now,
        expires_at: now + Duration::days(1),
    };
    framework()
        .given(vec![registered(), session(1)])
        .when_async(refresh(t0() + Duration::days(2)))
        .await
        .then_expect_error(UserError::SessionInvalid);
    let ended = UserEvent::SessionEnded { session_id: Uuid::from_u128(1), reason: SessionEndReason::Logout };
    framework()
        .given(vec![registered(), session(1), ended])
        .when_async(refresh(t0()))
        .await
        .then_expect_error(UserError::SessionInvalid);
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_every_session() {
    framework()
        .given(vec![registered(), session(2), session(1)])
        .when_async(UserCommand::ChangePassword { current: pw("correct horse"), new: pw("battery staple") })
        .await
        .then_expect_events(vec![
            UserEvent::PasswordChanged { password_hash: "hashed:battery staple".into() },
            UserEvent::SessionEnded { session_id: Uuid::from_u128(1), reason: SessionEndReason::PasswordChanged },
            UserEvent::SessionEnded { session_id: Uuid::from_u128(2), reason: SessionEndReason::PasswordChanged },
        ]);
    framework()
        .given(vec![registered()])
        .when_async(UserCommand::ChangePassword { current: pw("not my password"), new: pw("battery staple") })
        .await
        .then_expect_error(UserError::WrongPassword);
}

#[tokio::test]
async fn deactivation_ends_sessions_and_an_admin_cannot_lock_themselves_out() {
    let me = user_id_for(&ann());
    let admin = Uuid::from_u128(99);
    framework()
        .given(vec![registered(), session(1)])
        .when_async(UserCommand::SetActive { active: false, by: admin })
        .await
        .then_expect_events(vec![
            UserEvent::UserDeactivated,
            UserEvent::SessionEnded { session_id: Uuid::from_u128(1), reason: SessionEndReason::Deactivated },
        ]);
    framework()
        .given(vec![registered()])
        .when_async(UserCommand::SetActive { active: false, by: me })
        .await
        .then_expect_error(UserError::SelfLockout);
    framework()
        .given(vec![registered()])
        .when_async(UserCommand::ChangeRole { role: Role::User, by: me })
        .await
        .then_expect_error(UserError::SelfLockout);
}

#[tokio::test]
async fn role_changes_are_recorded_once() {
    let admin = Uuid::from_u128(99);
    framework()
        .given(vec![registered()])
        .when_async(UserCommand::ChangeRole { role: Role::Admin, by: admin })
        .await
        .then_expect_events(vec![UserEvent::RoleChanged { role: Role::Admin }]);
    framework()
        .given(vec![registered()])
        .when_async(UserCommand::ChangeRole { role: Role::Trainer, by: admin })
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn a_login_forgets_expired_sessions_and_keeps_the_client() {
    let later = t0() + Duration::days(3);
    let ended = |id| UserEvent::SessionEnded { session_id: Uuid::from_u128(id), reason: SessionEndReason::Expired };
    let long_agent = "a".repeat(MAX_USER_AGENT_CHARS + 10);
    framework()
        .given(vec![registered(), session(2), session(1)])
        .when_async(UserCommand::StartSession {
            password: pw("correct horse"),
            session_id: Uuid::from_u128(3),
            now: later,
            expires_at: later + Duration::days(1),
            user_agent: Some(long_agent),
            address: Some("10.0.0.7".into()),
        })
        .await
        .then_expect_events(vec![
            ended(1),
            ended(2),
            UserEvent::SessionStarted {
                session_id: Uuid::from_u128(3),
                expires_at: later + Duration::days(1),
                user_agent: Some("a".repeat(MAX_USER_AGENT_CHARS)),
                address: Some("10.0.0.7".into()),
            },
        ]);
}

#[tokio::test]
async fn every_session_but_one_can_be_ended_at_once() {
    let ended = |id| UserEvent::SessionEnded { session_id: Uuid::from_u128(id), reason: SessionEndReason::Revoked };
    let given = vec![registered(), session(1), session(2), session(3)];
    framework()
        .given(given.clone())
        .when_async(UserCommand::EndAllSessions { reason: SessionEndReason::Revoked, except: Some(Uuid::from_u128(2)) })
        .await
        .then_expect_events(vec![ended(1), ended(3)]);
    let all =
        |id| UserEvent::SessionEnded { session_id: Uuid::from_u128(id), reason: SessionEndReason::RevokedByAdmin };
    framework()
        .given(given)
        .when_async(UserCommand::EndAllSessions { reason: SessionEndReason::RevokedByAdmin, except: None })
        .await
        .then_expect_events(vec![all(1), all(2), all(3)]);
}

#[test]
fn a_session_started_when_its_v7_id_was_made() {
    let id = Uuid::now_v7();
    let started = Session::started_at(id).unwrap();
    assert!((Utc::now() - started).num_seconds().abs() < 5, "{started}");
    assert_eq!(Session::started_at(Uuid::from_u128(1)), None, "not a v7 id");
}

#[test]
fn session_events_recorded_before_the_client_was_kept_still_read() {
    let old = r#"{"SessionStarted":{"session_id":"00000000-0000-0000-0000-000000000001","expires_at":"2026-01-01T00:00:00Z"}}"#;
    match serde_json::from_str::<UserEvent>(old).unwrap() {
        UserEvent::SessionStarted { user_agent, address, .. } => assert_eq!((user_agent, address), (None, None)),
        other => panic!("{other:?}"),
    }
}

fn create_key(id: u128, name: &str) -> UserCommand {
    UserCommand::CreateApiKey {
        key_id: Uuid::from_u128(id),
        name: name.into(),
        prefix: format!("bsk_{id:08}"),
        secret_hash: format!("hash{id}"),
        now: t0(),
    }
}

fn key_created(id: u128, name: &str) -> UserEvent {
    UserEvent::ApiKeyCreated {
        key_id: Uuid::from_u128(id),
        name: name.into(),
        prefix: format!("bsk_{id:08}"),
        secret_hash: format!("hash{id}"),
        created_at: t0(),
    }
}

fn admin_id() -> Uuid {
    Uuid::from_u128(99)
}

#[tokio::test]
async fn an_api_key_is_created_with_its_trimmed_name_and_hash() {
    framework()
        .given(vec![registered()])
        .when_async(create_key(1, "  ci pipeline "))
        .await
        .then_expect_events(vec![key_created(1, "ci pipeline")]);
}

#[tokio::test]
async fn api_key_names_are_thing_names() {
    for bad in ["", "   ", "tab\there", &"n".repeat(101)] {
        framework()
            .given(vec![registered()])
            .when_async(create_key(1, bad))
            .await
            .then_expect_error(UserError::InvalidApiKeyName);
    }
    framework()
        .given(vec![registered()])
        .when_async(create_key(1, &"n".repeat(100)))
        .await
        .then_expect_events(vec![key_created(1, &"n".repeat(100))]);
}

#[tokio::test]
async fn a_user_holds_at_most_twenty_live_keys_and_a_revocation_makes_room() {
    let mut given = vec![registered()];
    given.extend((1..=MAX_API_KEYS as u128).map(|i| key_created(i, "k")));
    framework()
        .given(given.clone())
        .when_async(create_key(100, "one too many"))
        .await
        .then_expect_error(UserError::TooManyApiKeys);
    given.push(UserEvent::ApiKeyRevoked { key_id: Uuid::from_u128(3), by: user_id_for(&ann()) });
    framework()
        .given(given)
        .when_async(create_key(100, "now it fits"))
        .await
        .then_expect_events(vec![key_created(100, "now it fits")]);
}

#[tokio::test]
async fn a_deactivated_user_creates_no_key_and_ids_are_not_reused() {
    framework()
        .given(vec![registered(), UserEvent::UserDeactivated])
        .when_async(create_key(1, "k"))
        .await
        .then_expect_error(UserError::Inactive);
    let revoked = UserEvent::ApiKeyRevoked { key_id: Uuid::from_u128(1), by: admin_id() };
    framework()
        .given(vec![registered(), key_created(1, "k"), revoked])
        .when_async(create_key(1, "again"))
        .await
        .then_expect_error(UserError::ApiKeyExists);
}

#[tokio::test]
async fn a_key_is_revoked_once_by_whoever_revokes_it() {
    framework()
        .given(vec![registered(), key_created(1, "k")])
        .when_async(UserCommand::RevokeApiKey { key_id: Uuid::from_u128(1), by: admin_id() })
        .await
        .then_expect_events(vec![UserEvent::ApiKeyRevoked { key_id: Uuid::from_u128(1), by: admin_id() }]);
    let revoked = UserEvent::ApiKeyRevoked { key_id: Uuid::from_u128(1), by: user_id_for(&ann()) };
    framework()
        .given(vec![registered(), key_created(1, "k"), revoked])
        .when_async(UserCommand::RevokeApiKey { key_id: Uuid::from_u128(1), by: admin_id() })
        .await
        .then_expect_error(UserError::ApiKeyRevoked);
    framework()
        .given(vec![registered(), key_created(1, "k")])
        .when_async(UserCommand::RevokeApiKey { key_id: Uuid::from_u128(2), by: admin_id() })
        .await
        .then_expect_error(UserError::UnknownApiKey);
}

#[test]
fn revoked_keys_leave_the_state_and_snapshots_from_before_keys_still_read() {
    let mut user = User::default();
    for event in [registered(), key_created(1, "a"), key_created(2, "b")] {
        user.apply(event);
    }
    user.apply(UserEvent::ApiKeyRevoked { key_id: Uuid::from_u128(1), by: admin_id() });
    assert_eq!(user.api_keys.keys().copied().collect::<Vec<_>>(), vec![Uuid::from_u128(2)]);
    assert!(user.revoked_api_keys.contains(&Uuid::from_u128(1)));
    let mut old = serde_json::to_value(&user).unwrap();
    let object = old.as_object_mut().unwrap();
    object.remove("api_keys");
    object.remove("revoked_api_keys");
    let read: User = serde_json::from_value(old).unwrap();
    assert!(read.api_keys.is_empty() && read.revoked_api_keys.is_empty());
}
