//! Given/when/then tests of the QaSession aggregate.

use super::*;
use crate::Role;
use cqrs_es::test::TestFramework;

fn framework() -> TestFramework<QaSession> {
    TestFramework::with(())
}

fn session() -> Uuid {
    Uuid::from_u128(5)
}

fn me() -> Actor {
    Actor { id: Uuid::from_u128(42), role: Role::User }
}

fn ask(n: u128, question: &str) -> QaCommand {
    QaCommand::AskQuestion {
        session_id: session(),
        by: me(),
        question_id: Uuid::from_u128(n),
        model_id: Uuid::from_u128(3),
        question: question.into(),
        params: AnswerParams::default(),
        conversation: None,
    }
}

fn asked(n: u128, question: &str, context: Vec<Turn>) -> QaEvent {
    QaEvent::QuestionAsked {
        session_id: session(),
        question_id: Uuid::from_u128(n),
        user_id: me().id,
        model_id: Uuid::from_u128(3),
        question: question.into(),
        params: AnswerParams::default(),
        system: None,
        context,
    }
}

fn answered(n: u128, text: &str) -> QaEvent {
    let answer = Answer {
        answer: text.into(),
        response_ms: 5,
        prompt_tokens: 3,
        completion_tokens: 2,
        finish_reason: "stop".into(),
        cached: false,
    };
    QaEvent::QuestionAnswered { question_id: Uuid::from_u128(n), answer }
}

#[test]
fn a_follow_up_question_carries_the_answered_turns() {
    framework().given_no_previous_events().when(ask(1, " Hi? ")).then_expect_events(vec![asked(1, "Hi?", vec![])]);
    let turn = Turn { question_id: Some(Uuid::from_u128(1)), question: "Hi?".into(), answer: "Hello.".into() };
    framework()
        .given(vec![asked(1, "Hi?", vec![]), answered(1, "Hello."), asked(2, "Unanswered?", vec![])])
        .when(ask(3, "And?"))
        .then_expect_events(vec![asked(3, "And?", vec![turn])]);
}

#[test]
fn another_users_conversation_is_not_found() {
    let command = match ask(2, "Mine?") {
        QaCommand::AskQuestion { session_id, question_id, model_id, question, params, .. } => QaCommand::AskQuestion {
            session_id,
            by: Actor { id: Uuid::from_u128(9), role: Role::Admin },
            question_id,
            model_id,
            question,
            params,
            conversation: None,
        },
        other => other,
    };
    framework().given(vec![asked(1, "Hi?", vec![])]).when(command).then_expect_error(QaError::NotFound);
}

#[test]
fn bad_questions_and_settings_are_refused() {
    framework().given_no_previous_events().when(ask(1, "   ")).then_expect_error(QaError::InvalidQuestion);
    let long = "x".repeat(MAX_QUESTION_CHARS + 1);
    framework().given_no_previous_events().when(ask(1, &long)).then_expect_error(QaError::InvalidQuestion);
    let command = match ask(1, "Hi?") {
        QaCommand::AskQuestion { session_id, by, question_id, model_id, question, .. } => QaCommand::AskQuestion {
            session_id,
            by,
            question_id,
            model_id,
            question,
            params: AnswerParams { max_new_tokens: 0, ..AnswerParams::default() },
            conversation: None,
        },
        other => other,
    };
    framework().given_no_previous_events().when(command).then_expect_error(QaError::InvalidParams("max_new_tokens"));
    let with = |params: AnswerParams, conversation: Option<Conversation>| match ask(1, "Hi?") {
        QaCommand::AskQuestion { session_id, by, question_id, model_id, question, .. } => {
            QaCommand::AskQuestion { session_id, by, question_id, model_id, question, params, conversation }
        }
        other => other,
    };
    let stops = AnswerParams { stop: vec!["a".into(); 5], ..AnswerParams::default() };
    framework().given_no_previous_events().when(with(stops, None)).then_expect_error(QaError::InvalidParams("stop"));
    let top_p = AnswerParams { top_p: Some(0.0), ..AnswerParams::default() };
    framework().given_no_previous_events().when(with(top_p, None)).then_expect_error(QaError::InvalidParams("top_p"));
    let empty_turn = Conversation {
        system: None,
        turns: vec![Turn { question_id: None, question: " ".into(), answer: "a".into() }],
    };
    framework()
        .given_no_previous_events()
        .when(with(AnswerParams::default(), Some(empty_turn)))
        .then_expect_error(QaError::InvalidConversation);
}

#[test]
fn an_explicit_conversation_replaces_the_session_s_own_context() {
    let turn = Turn { question_id: None, question: "Who are you?".into(), answer: "A bot.".into() };
    let conversation = Conversation { system: Some("Be brief.".into()), turns: vec![turn.clone()] };
    let command = match ask(3, "And?") {
        QaCommand::AskQuestion { session_id, by, question_id, model_id, question, params, .. } => {
            QaCommand::AskQuestion {
                session_id,
                by,
                question_id,
                model_id,
                question,
                params,
                conversation: Some(conversation),
            }
        }
        other => other,
    };
    // The turns sent with the question are the question's own (erased with it).
    let own = Turn { question_id: Some(Uuid::from_u128(3)), ..turn };
    let expected = match asked(3, "And?", vec![own]) {
        QaEvent::QuestionAsked { session_id, question_id, user_id, model_id, question, params, context, .. } => {
            QaEvent::QuestionAsked {
                session_id,
                question_id,
                user_id,
                model_id,
                question,
                params,
                system: Some("Be brief.".into()),
                context,
            }
        }
        other => other,
    };
    framework()
        .given(vec![asked(1, "Hi?", vec![]), answered(1, "Hello.")])
        .when(command)
        .then_expect_events(vec![expected]);
}

#[test]
fn an_answer_is_recorded_once() {
    framework()
        .given(vec![asked(1, "Hi?", vec![])])
        .when(QaCommand::RecordAnswer { question_id: Uuid::from_u128(1), answer: answer_of(answered(1, "Hello.")) })
        .then_expect_events(vec![answered(1, "Hello.")]);
    framework()
        .given(vec![asked(1, "Hi?", vec![]), answered(1, "Hello.")])
        .when(QaCommand::RecordFailure { question_id: Uuid::from_u128(1), code: "x".into(), message: "y".into() })
        .then_expect_events(vec![]);
}

fn answer_of(event: QaEvent) -> Answer {
    match event {
        QaEvent::QuestionAnswered { answer, .. } => answer,
        _ => unreachable!(),
    }
}

#[test]
fn the_context_keeps_only_the_last_turns() {
    let mut history = Vec::new();
    for n in 1..=6u128 {
        history.push(asked(n, &format!("q{n}"), vec![]));
        history.push(answered(n, &format!("a{n}")));
    }
    let context: Vec<Turn> = (3..=6)
        .map(|n| Turn { question_id: Some(Uuid::from_u128(n)), question: format!("q{n}"), answer: format!("a{n}") })
        .collect();
    framework().given(history).when(ask(7, "Next?")).then_expect_events(vec![asked(7, "Next?", context)]);
    framework()
        .given(vec![asked(1, "Hi?", vec![])])
        .when(ask(1, "Hi again?"))
        .then_expect_error(QaError::DuplicateQuestion);
}

fn turn(n: u128, question: &str, answer: &str) -> Turn {
    Turn { question_id: Some(Uuid::from_u128(n)), question: question.into(), answer: answer.into() }
}

#[test]
fn a_deleted_question_leaves_the_context_and_is_not_answered() {
    let delete = |n| QaCommand::DeleteQuestion { by: me(), question_id: Uuid::from_u128(n) };
    let history = vec![asked(1, "q1", vec![]), answered(1, "a1"), asked(2, "q2", vec![]), answered(2, "a2")];
    framework()
        .given(history.clone())
        .when(delete(1))
        .then_expect_events(vec![QaEvent::QuestionDeleted { question_id: Uuid::from_u128(1) }]);
    let mut after = history.clone();
    after.push(QaEvent::QuestionDeleted { question_id: Uuid::from_u128(1) });
    framework().given(after).when(ask(3, "q3")).then_expect_events(vec![asked(3, "q3", vec![turn(2, "q2", "a2")])]);
    // A pending question that is deleted: its late answer is dropped.
    framework()
        .given(vec![asked(1, "q1", vec![]), QaEvent::QuestionDeleted { question_id: Uuid::from_u128(1) }])
        .when(QaCommand::RecordAnswer { question_id: Uuid::from_u128(1), answer: answer_of(answered(1, "a1")) })
        .then_expect_events(vec![]);
}

#[test]
fn a_cleared_history_leaves_no_context() {
    let history = vec![asked(1, "q1", vec![]), answered(1, "a1"), QaEvent::HistoryCleared {}];
    framework().given(history).when(ask(2, "q2")).then_expect_events(vec![asked(2, "q2", vec![])]);
}

#[test]
fn only_the_owner_deletes_and_an_empty_conversation_has_nothing_to_delete() {
    let stranger = Actor { id: Uuid::from_u128(9), role: Role::Admin };
    framework()
        .given(vec![asked(1, "q1", vec![])])
        .when(QaCommand::DeleteQuestion { by: stranger, question_id: Uuid::from_u128(1) })
        .then_expect_error(QaError::NotFound);
    framework()
        .given(vec![asked(1, "q1", vec![])])
        .when(QaCommand::ClearHistory { by: stranger })
        .then_expect_error(QaError::NotFound);
    framework()
        .given_no_previous_events()
        .when(QaCommand::ClearHistory { by: me() })
        .then_expect_error(QaError::NotFound);
}

#[test]
fn an_admin_clears_a_conversation_for_its_owner_and_no_one_else_does() {
    let admin = Actor { id: Uuid::from_u128(9), role: Role::Admin };
    let trainer = Actor { id: Uuid::from_u128(8), role: Role::Trainer };
    framework()
        .given(vec![asked(1, "q1", vec![])])
        .when(QaCommand::ClearHistoryForOwner { by: admin })
        .then_expect_events(vec![QaEvent::HistoryCleared {}]);
    framework()
        .given(vec![asked(1, "q1", vec![])])
        .when(QaCommand::ClearHistoryForOwner { by: trainer })
        .then_expect_error(QaError::NotFound);
    framework()
        .given_no_previous_events()
        .when(QaCommand::ClearHistoryForOwner { by: admin })
        .then_expect_error(QaError::NotFound);
}

#[test]
fn turns_recorded_without_a_question_id_still_read() {
    let old: Turn = serde_json::from_str(r#"{"question":"q","answer":"a"}"#).unwrap();
    assert_eq!(old, Turn { question_id: None, question: "q".into(), answer: "a".into() });
    assert_eq!(serde_json::to_string(&old).unwrap(), r#"{"question":"q","answer":"a"}"#);
}
