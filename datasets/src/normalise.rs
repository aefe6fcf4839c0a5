//! From decoded fields to a normalised record: shape detection and the per-field rules.

use std::borrow::Cow;

use crate::error::RecordErrorKind;
use crate::raw::{Field, MessageField, MessagesField, RawRecord, Top};
use crate::record::{RecordRef, Role, Shape};
use crate::MAX_DEPTH;

/// A record error before it is given a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) field: Option<String>,
    pub(crate) kind: RecordErrorKind,
    pub(crate) message: String,
}

impl Fault {
    pub(crate) fn new(kind: RecordErrorKind, field: Option<&str>, message: impl Into<String>) -> Fault {
        Fault { field: field.map(str::to_owned), kind, message: message.into() }
    }
}

/// Parses one JSON record (a JSONL line or a JSON array element) that is already known to be UTF-8.
pub(crate) fn parse_json_record(text: &str) -> Result<RecordRef<'_>, Fault> {
    check_depth(text.as_bytes())?;
    let top: Top<'_> = serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        // serde_json appends " at line L column C"; restate the position relative to the record.
        let what = full.split(" at line ").next().unwrap_or(&full);
        let at = if e.line() <= 1 {
            format!("column {}", e.column())
        } else {
            format!("line {} of the record, column {}", e.line(), e.column())
        };
        Fault::new(RecordErrorKind::MalformedJson, None, format!("malformed JSON: {what} ({at})"))
    })?;
    match top {
        Top::Object(raw) => normalise(*raw),
        Top::Other(found) => Err(Fault::new(
            RecordErrorKind::NotAnObject,
            None,
            format!("a record must be a JSON object, found {found}"),
        )),
    }
}

/// Rejects nesting deeper than [`MAX_DEPTH`] before the parser sees it, with an error that says so
/// (serde_json's own limit is deeper and its message names no cause a user would recognise).
pub(crate) fn check_depth(bytes: &[u8]) -> Result<(), Fault> {
    // Fast path: with no more opening brackets than the limit (strings included), depth cannot exceed it.
    if memchr::memchr2_iter(b'{', b'[', bytes).take(MAX_DEPTH + 1).count() <= MAX_DEPTH {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                // Jump through the string: only a quote or a backslash matters inside it.
                i += 1;
                loop {
                    match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                        Some(j) if bytes[i + j] == b'\\' => i += j + 2,
                        Some(j) => {
                            i += j;
                            break;
                        }
                        None => return Ok(()),
                    }
                    if i >= bytes.len() {
                        return Ok(());
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(too_deep());
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

pub(crate) fn too_deep() -> Fault {
    Fault::new(RecordErrorKind::TooDeep, None, format!("JSON nested deeper than {MAX_DEPTH} levels"))
}

/// Decides the shape from the fields present, then applies that shape's rules.
///
/// `messages` wins over `instruction`/`output`, which win over the question/answer names (`question` or
/// `prompt`; `answer`, `response` or OpenAI's legacy `completion`).
pub(crate) fn normalise(raw: RawRecord<'_>) -> Result<RecordRef<'_>, Fault> {
    if let Some(key) = raw.duplicate {
        return Err(Fault::new(RecordErrorKind::DuplicateField, Some(key), format!("`{key}` appears twice")));
    }
    if let Some(messages) = raw.messages {
        return chat(messages);
    }
    if raw.instruction.is_some() || raw.output.is_some() {
        let instruction = prompt_text(raw.instruction, "instruction")?;
        let input = match raw.input {
            None | Some(Field::Null) => None,
            Some(Field::Text(t)) => Some(t),
            Some(Field::Other(found)) => return Err(wrong_type("input", found)),
        };
        let output = text(raw.output, "output")?;
        let user = match input {
            Some(input) if !input.trim().is_empty() => Cow::Owned(format!("{instruction}\n\n{input}")),
            _ => instruction,
        };
        return Ok(RecordRef { shape: Shape::Alpaca, messages: vec![(Role::User, user), (Role::Assistant, output)] });
    }
    let has_qa = [&raw.question, &raw.prompt, &raw.answer, &raw.response, &raw.completion].iter().any(|f| f.is_some());
    if has_qa {
        // Name missing fields in the vocabulary the record uses.
        let prompt_style =
            raw.question.is_none() && (raw.prompt.is_some() || raw.response.is_some() || raw.completion.is_some());
        let question = match raw.question {
            Some(q) => prompt_text(Some(q), "question")?,
            None if raw.prompt.is_some() => prompt_text(raw.prompt, "prompt")?,
            None => return Err(missing(if prompt_style { "prompt" } else { "question" })),
        };
        let answer = match raw.answer {
            Some(a) => text(Some(a), "answer")?,
            None if raw.response.is_some() => text(raw.response, "response")?,
            None if raw.completion.is_some() => text(raw.completion, "completion")?,
            None if prompt_style => {
                let message = "missing field `response` (or `completion`)";
                return Err(Fault::new(RecordErrorKind::MissingField, Some("response"), message));
            }
            None => return Err(missing("answer")),
        };
        return Ok(RecordRef {
            shape: Shape::QuestionAnswer,
            messages: vec![(Role::User, question), (Role::Assistant, answer)],
        });
    }
    Err(Fault::new(
        RecordErrorKind::UnknownShape,
        None,
        "no known fields: expected `question`/`answer`, `prompt`/`response`, `prompt`/`completion`, \
         `instruction`/`output` or `messages`",
    ))
}

fn chat(messages: MessagesField<'_>) -> Result<RecordRef<'_>, Fault> {
    let list = match messages {
        MessagesField::List(list) => list,
        MessagesField::Null => return Err(missing("messages")),
        MessagesField::Other(found) => return Err(wrong_type("messages", found)),
    };
    if list.is_empty() {
        return Err(Fault::new(RecordErrorKind::EmptyField, Some("messages"), "`messages` is empty"));
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, m) in list.into_iter().enumerate() {
        let (role, content, duplicate) = match m {
            MessageField::Object { role, content, duplicate } => (role, content, duplicate),
            MessageField::Other(found) => {
                let path = format!("messages[{i}]");
                return Err(Fault::new(
                    RecordErrorKind::WrongType,
                    Some(&path),
                    format!("`{path}` must be an object, found {found}"),
                ));
            }
        };
        if let Some(key) = duplicate {
            let path = format!("messages[{i}].{key}");
            return Err(Fault::new(RecordErrorKind::DuplicateField, Some(&path), format!("`{path}` appears twice")));
        }
        let role_text = text(role, "role").map_err(|f| at_message(f, i))?;
        let role = Role::parse(&role_text).ok_or_else(|| {
            let path = format!("messages[{i}].role");
            Fault::new(
                RecordErrorKind::UnknownRole,
                Some(&path),
                format!("unknown role `{role_text}`; expected system, user or assistant"),
            )
        })?;
        let content = text(content, "content").map_err(|f| at_message(f, i))?;
        out.push((role, content));
    }
    if !out.iter().any(|(role, _)| *role == Role::Assistant) {
        return Err(Fault::new(
            RecordErrorKind::NoAssistantMessage,
            Some("messages"),
            "no assistant message: a chat record needs at least one",
        ));
    }
    Ok(RecordRef { shape: Shape::Chat, messages: out })
}

/// Re-roots a field error under `messages[i]`.
fn at_message(mut fault: Fault, i: usize) -> Fault {
    if let Some(field) = &fault.field {
        let path = format!("messages[{i}].{field}");
        fault.message = fault.message.replace(&format!("`{field}`"), &format!("`{path}`"));
        fault.field = Some(path);
    }
    fault
}

/// A required string; it may be empty (an empty answer is counted in the stats, not rejected).
fn text<'a>(field: Option<Field<'a>>, name: &str) -> Result<Cow<'a, str>, Fault> {
    match field {
        Some(Field::Text(t)) => Ok(t),
        None | Some(Field::Null) => Err(missing(name)),
        Some(Field::Other(found)) => Err(wrong_type(name, found)),
    }
}

/// A required string that must hold more than whitespace.
fn prompt_text<'a>(field: Option<Field<'a>>, name: &str) -> Result<Cow<'a, str>, Fault> {
    let t = text(field, name)?;
    if t.trim().is_empty() {
        return Err(Fault::new(RecordErrorKind::EmptyField, Some(name), format!("`{name}` is empty")));
    }
    Ok(t)
}

fn missing(name: &str) -> Fault {
    Fault::new(RecordErrorKind::MissingField, Some(name), format!("missing field `{name}`"))
}

fn wrong_type(name: &str, found: &str) -> Fault {
    Fault::new(RecordErrorKind::WrongType, Some(name), format!("`{name}` must be a string, found {found}"))
}
