//! Bad records from issue 3: each reported with its line (or CSV row), field and reason, and the
//! validator goes on past it.

use bonsai_datasets::{
    validate, RecordError, RecordErrorKind, ValidateOptions, ValidationReport, MAX_DEPTH, MAX_ERRORS_KEPT,
    MAX_RECORD_BYTES,
};

fn report(bytes: &[u8]) -> ValidationReport {
    validate(bytes, &ValidateOptions::default()).unwrap()
}

fn only_error(bytes: &[u8]) -> RecordError {
    let r = report(bytes);
    assert_eq!(r.error_count, 1, "{:?}", r.errors);
    assert!(!r.valid);
    r.errors.into_iter().next().unwrap()
}

const GOOD: &str = "{\"question\":\"q\",\"answer\":\"a\"}\n";

#[test]
fn reports_invalid_utf8_past_the_sniffed_start_per_line() {
    let mut data = GOOD.repeat(3000).into_bytes();
    data.extend_from_slice(b"{\"question\":\"caf\xe9\",\"answer\":\"a\"}\n");
    let e = only_error(&data);
    assert_eq!((e.line, e.kind), (3001, RecordErrorKind::InvalidUtf8));
}

#[test]
fn reports_malformed_json_lines_with_their_line_numbers() {
    let data = format!("{GOOD}{{\"question\": \"q\", \"answer\": }}\n{GOOD}[1, 2\n\"just a string\"\n{GOOD}");
    let r = report(data.as_bytes());
    assert_eq!((r.record_count, r.error_count), (3, 3));
    let lines: Vec<_> = r.errors.iter().map(|e| (e.line, e.kind)).collect();
    assert_eq!(
        lines,
        [(2, RecordErrorKind::MalformedJson), (4, RecordErrorKind::MalformedJson), (5, RecordErrorKind::NotAnObject)]
    );
    assert!(r.errors[0].message.contains("column"), "{}", r.errors[0].message);
}

#[test]
fn reports_a_line_over_one_mib_and_continues_after_it() {
    let big = format!("{{\"question\":\"q\",\"answer\":\"{}\"}}\n", "x".repeat(MAX_RECORD_BYTES + 10));
    let data = format!("{GOOD}{big}{GOOD}");
    let r = report(data.as_bytes());
    assert_eq!((r.record_count, r.error_count), (2, 1));
    assert_eq!((r.errors[0].line, r.errors[0].kind), (2, RecordErrorKind::RecordTooLong));
    // Also as the last line without a newline, and inside a JSON array.
    assert_eq!(only_error(format!("{GOOD}{}", big.trim_end()).as_bytes()).kind, RecordErrorKind::RecordTooLong);
    let array = format!("[{},\n{}]", GOOD.trim_end(), big.trim_end());
    let e = only_error(array.as_bytes());
    assert_eq!((e.line, e.kind), (2, RecordErrorKind::RecordTooLong));
}

#[test]
fn reports_deep_nesting_clearly_in_jsonl_json_and_csv() {
    let deep = format!("{}1{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    let line = format!("{{\"question\":\"q\",\"answer\":\"a\",\"x\":{deep}}}");
    let e = only_error(format!("{GOOD}{line}\n").as_bytes());
    assert_eq!((e.line, e.kind), (2, RecordErrorKind::TooDeep));
    assert!(e.message.contains("deeper than"), "{}", e.message);
    assert_eq!(only_error(format!("[{line}]").as_bytes()).kind, RecordErrorKind::TooDeep);
    // Far past serde_json's own limit: still a clear error, no stack overflow.
    let hostile = "[".repeat(100_000);
    assert_eq!(only_error(format!("{{\"q\":{hostile}\n").as_bytes()).kind, RecordErrorKind::TooDeep);
    let csv = format!("messages\n\"{}\"\n", deep.replace('"', "\"\""));
    let e = only_error(csv.as_bytes());
    assert_eq!((e.line, e.field.as_deref(), e.kind), (2, Some("messages"), RecordErrorKind::TooDeep));
    // Brackets inside strings do not count.
    let in_string = format!("{{\"question\":\"{deep}\",\"answer\":\"a\"}}\n");
    assert!(report(in_string.as_bytes()).valid);
}

#[test]
fn names_missing_and_empty_fields() {
    let cases = [
        (r#"{"question":"q"}"#, "answer", RecordErrorKind::MissingField),
        (r#"{"answer":"a"}"#, "question", RecordErrorKind::MissingField),
        (r#"{"prompt":"p"}"#, "response", RecordErrorKind::MissingField),
        (r#"{"question":null,"answer":"a"}"#, "question", RecordErrorKind::MissingField),
        (r#"{"question":"  ","answer":"a"}"#, "question", RecordErrorKind::EmptyField),
        (r#"{"instruction":"i"}"#, "output", RecordErrorKind::MissingField),
        (r#"{"output":"o"}"#, "instruction", RecordErrorKind::MissingField),
        (r#"{"messages":[]}"#, "messages", RecordErrorKind::EmptyField),
        (r#"{"messages":[{"role":"user"}]}"#, "messages[0].content", RecordErrorKind::MissingField),
        (r#"{"messages":[{"content":"c"}]}"#, "messages[0].role", RecordErrorKind::MissingField),
        (r#"{"question":"q","answer":"a","question":"again"}"#, "question", RecordErrorKind::DuplicateField),
    ];
    for (line, field, kind) in cases {
        let e = only_error(line.as_bytes());
        assert_eq!((e.field.as_deref(), e.kind), (Some(field), kind), "{line}: {}", e.message);
        assert!(e.message.contains(field), "{line}: {}", e.message);
    }
    assert_eq!(only_error(br#"{"id":1,"text":"t"}"#).kind, RecordErrorKind::UnknownShape);
}

#[test]
fn names_fields_of_the_wrong_type() {
    let cases = [
        (r#"{"question":3,"answer":"a"}"#, "question", "a number"),
        (r#"{"question":"q","answer":["a"]}"#, "answer", "an array"),
        (r#"{"instruction":"i","input":{"k":1},"output":"o"}"#, "input", "an object"),
        (r#"{"messages":"hi"}"#, "messages", "a string"),
        (r#"{"messages":[1]}"#, "messages[0]", "a number"),
        (r#"{"messages":[{"role":"user","content":true}]}"#, "messages[0].content", "a boolean"),
    ];
    for (line, field, found) in cases {
        let e = only_error(line.as_bytes());
        assert_eq!((e.field.as_deref(), e.kind), (Some(field), RecordErrorKind::WrongType), "{line}");
        assert!(e.message.contains(found), "{line}: {}", e.message);
    }
}

#[test]
fn rejects_unknown_roles_and_chats_without_an_assistant() {
    let e = only_error(br#"{"messages":[{"role":"user","content":"u"},{"role":"tool","content":"t"}]}"#);
    assert_eq!((e.field.as_deref(), e.kind), (Some("messages[1].role"), RecordErrorKind::UnknownRole));
    assert!(e.message.contains("`tool`"));
    let e = only_error(br#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}]}"#);
    assert_eq!(e.kind, RecordErrorKind::NoAssistantMessage);
}

#[test]
fn rejects_records_whose_shape_differs_from_the_first() {
    let data = format!("{GOOD}{{\"instruction\":\"i\",\"output\":\"o\"}}\n");
    let e = only_error(data.as_bytes());
    assert_eq!((e.line, e.kind), (2, RecordErrorKind::ShapeMismatch));
}

#[test]
fn keeps_at_most_one_hundred_errors_but_counts_them_all() {
    let data = "{nope\n".repeat(250);
    let r = report(data.as_bytes());
    assert_eq!((r.errors.len(), r.error_count, r.record_count), (MAX_ERRORS_KEPT, 250, 0));
    assert_eq!(r.errors.last().unwrap().line, 100);
    assert_eq!(r.shape, None);
}

#[test]
fn reports_broken_json_array_structure_once_and_stops() {
    let cases = [
        ("[{\"question\":\"q\",\"answer\":\"a\"} {\"question\":\"q\",\"answer\":\"a\"}]", "expected `,` or `]`"),
        ("[{\"question\":\"q\",\"answer\":\"a\"},\n", "not closed"),
        ("[{\"question\":\"q\",\"answer\":\"a\"}] trailing", "after the closing"),
        ("[{\"question\":\"q\",\"answer\":\"a\"},]", "trailing comma"),
        ("[{\"question\":\"q\",\"answer\":\"a\"}, {\"question\":\"q", "end of file inside"),
    ];
    for (data, needle) in cases {
        let r = report(data.as_bytes());
        assert_eq!((r.record_count, r.error_count), (1, 1), "{data}");
        assert!(r.errors[0].message.contains(needle), "{data}: {}", r.errors[0].message);
    }
    // A bad element inside a sound array is just that element's error.
    let r = report(b"[1, {\"question\":\"q\",\"answer\":\"a\"}, \"s\"]");
    let kinds: Vec<_> = r.errors.iter().map(|e| (e.record, e.kind)).collect();
    assert_eq!(kinds, [(1, RecordErrorKind::NotAnObject), (3, RecordErrorKind::NotAnObject)]);
}

#[test]
fn reports_bad_csv_rows_by_line() {
    let data = "question,answer\nq,a\n,a\nonly-question\n\"multi\nline\",\"a\"\nq,\n";
    let r = report(data.as_bytes());
    let errs: Vec<_> = r.errors.iter().map(|e| (e.line, e.field.as_deref(), e.kind)).collect();
    assert_eq!(
        errs,
        [(3, Some("question"), RecordErrorKind::EmptyField), (4, Some("answer"), RecordErrorKind::MissingField)]
    );
    assert_eq!((r.record_count, r.stats.empty_answers), (3, 1));
}

#[test]
fn stops_at_a_csv_row_over_one_mib() {
    let data = format!("question,answer\nq,a\nq,\"{}\nq,a\n", "x".repeat(MAX_RECORD_BYTES + 100_000));
    let r = report(data.as_bytes());
    assert_eq!((r.record_count, r.error_count), (1, 1));
    assert_eq!((r.errors[0].line, r.errors[0].kind), (3, RecordErrorKind::RecordTooLong));
}
