//! Statistics, warnings, report serialisation, and property tests for round trips.

use bonsai_datasets::{preview, records, validate, Record, ValidateOptions, ValidationReport, Warning};
use proptest::prelude::*;

fn jsonl(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(q, a)| serde_json::json!({"question": q, "answer": a}).to_string() + "\n").collect()
}

#[test]
fn computes_character_stats_duplicates_and_empty_answers() {
    let data = jsonl(&[("ab", "1234"), ("abcd", ""), ("ab", "1234"), ("日本", "xy")]);
    let r = validate(data.as_bytes(), &ValidateOptions::default()).unwrap();
    let s = &r.stats;
    assert_eq!((s.records, s.duplicates, s.empty_answers), (4, 1, 1));
    let p = s.prompt_chars.unwrap();
    assert_eq!((p.min, p.max, p.total), (2, 4, 10));
    assert!((p.mean - 2.5).abs() < 1e-9);
    let a = s.answer_chars.unwrap();
    assert_eq!((a.min, a.max, a.total), (0, 4, 10));
    assert_eq!((s.prompt_tokens, s.answer_tokens), (None, None));
    assert!(r.valid);
    assert!(r.warnings.contains(&Warning::Duplicates { count: 1, first_line: 3 }));
    assert!(r.warnings.contains(&Warning::EmptyAnswers { count: 1, first_line: 2 }));
    assert!(r.warnings.contains(&Warning::FewRecords { records: 4, recommended_minimum: 10 }));
}

#[test]
fn counts_tokens_with_the_callers_tokenizer() {
    let data = jsonl(&[("one two three", "four five"), ("six", "seven eight nine ten")]);
    let words = |s: &str| s.split_whitespace().count();
    let options = ValidateOptions { tokenizer: Some(&words), long_example_tokens: 4, ..Default::default() };
    let r = validate(data.as_bytes(), &options).unwrap();
    let (p, a) = (r.stats.prompt_tokens.unwrap(), r.stats.answer_tokens.unwrap());
    assert_eq!((p.min, p.max, a.min, a.max), (1, 3, 2, 4));
    assert!(r.warnings.contains(&Warning::LongExamples { count: 2, first_line: 1, threshold_chars: 32_768 }));
}

#[test]
fn token_counts_cross_batches_in_file_order() {
    // More records than one counting batch (1,024): totals and the first long line must not depend on it.
    let answers: Vec<String> = (0..3000).map(|i| if i == 2499 { "w ".repeat(50) } else { format!("a{i} b") }).collect();
    let pairs: Vec<(String, &str)> = (0..3000).map(|i| (format!("q{i} x y"), answers[i].as_str())).collect();
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(q, a)| (q.as_str(), *a)).collect();
    let data = jsonl(&refs);
    let words = |s: &str| s.split_whitespace().count();
    let options = ValidateOptions { tokenizer: Some(&words), long_example_tokens: 40, ..Default::default() };
    let r = validate(data.as_bytes(), &options).unwrap();
    let (p, a) = (r.stats.prompt_tokens.unwrap(), r.stats.answer_tokens.unwrap());
    assert_eq!((p.total, p.min, p.max), (9000, 3, 3));
    assert_eq!((a.total, a.min, a.max), (2 * 2999 + 50, 2, 50));
    assert!(r.warnings.contains(&Warning::LongExamples { count: 1, first_line: 2500, threshold_chars: 32_768 }));
}

#[test]
fn warns_about_very_long_examples_by_characters() {
    let long = "x".repeat(40_000);
    let mut pairs = vec![("q", "a"); 12];
    pairs[5] = ("q", long.as_str());
    let data = jsonl(&pairs);
    let r = validate(data.as_bytes(), &ValidateOptions::default()).unwrap();
    assert!(r.valid);
    assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings); // the long one, and 11 duplicates of ("q","a")
    assert!(r.warnings.contains(&Warning::LongExamples { count: 1, first_line: 6, threshold_chars: 32_768 }));
}

#[test]
fn the_report_serialises_to_the_json_an_event_carries() {
    let data = "{\"question\":\"q\",\"answer\":\"a\"}\n{\"question\":\"q\"}\n";
    let r = validate(data.as_bytes(), &ValidateOptions::default()).unwrap();
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["format"], "jsonl");
    assert_eq!(json["shape"], "question_answer");
    assert_eq!(json["error_count"], 1);
    assert_eq!(json["errors"][0]["line"], 2);
    assert_eq!(json["errors"][0]["field"], "answer");
    assert_eq!(json["errors"][0]["kind"], "missing_field");
    assert_eq!(json["warnings"][0]["kind"], "few_records");
    let back: ValidationReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);
}

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, including quotes, commas, newlines and backslashes; prompts need a non-blank char.
    prop_oneof![any::<String>(), "[a-z ,\"\\\\\n\r\t{}\\[\\]]{0,40}", "\\PC{0,20}"]
}

fn qa() -> impl Strategy<Value = (String, String)> {
    (text().prop_map(|q| format!("{q}?")), text())
}

fn write_csv(pairs: &[(String, String)]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["question", "answer"]).unwrap();
    for (q, a) in pairs {
        w.write_record([q, a]).unwrap();
    }
    w.into_inner().unwrap()
}

proptest! {
    #[test]
    fn any_question_answer_record_round_trips_through_jsonl(pairs in prop::collection::vec(qa(), 1..20)) {
        let data = pairs.iter().map(|(q, a)| serde_json::json!({"question": q, "answer": a}).to_string() + "\n").collect::<String>();
        let got: Vec<Record> = records(data.as_bytes()).unwrap().collect::<Result<_, _>>().unwrap();
        let expected: Vec<Record> = pairs.iter().map(|(q, a)| Record::question_answer(q.clone(), a.clone())).collect();
        prop_assert_eq!(got, expected);
        let r = validate(data.as_bytes(), &ValidateOptions::default()).unwrap();
        prop_assert_eq!(r.record_count, pairs.len() as u64);
    }

    #[test]
    fn any_question_answer_record_round_trips_through_csv(pairs in prop::collection::vec(qa(), 1..20)) {
        let data = write_csv(&pairs);
        let got: Vec<Record> = records(&data[..]).unwrap().collect::<Result<_, _>>().unwrap();
        let expected: Vec<Record> = pairs.iter().map(|(q, a)| Record::question_answer(q.clone(), a.clone())).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn any_record_list_round_trips_through_a_json_array(pairs in prop::collection::vec(qa(), 1..20)) {
        let expected: Vec<Record> = pairs.iter().map(|(q, a)| Record::question_answer(q.clone(), a.clone())).collect();
        // The normalised form is itself a chat record, so a serialised page reads back as the same records.
        let data = serde_json::to_string_pretty(&expected).unwrap();
        let got: Vec<Record> = records(data.as_bytes()).unwrap().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(preview(data.as_bytes(), 0, 100).unwrap(), expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = validate(&bytes[..], &ValidateOptions::default());
        if let Ok(it) = records(&bytes[..]) {
            for _ in it {}
        }
    }
}
