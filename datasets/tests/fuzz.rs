//! Fuzzing of the dataset parsers, which read bytes straight from users: whatever the bytes, `detect`,
//! `validate`, `preview` and `records` answer (a report or an error) and never panic. Bounded in CI by the case
//! count (`PROPTEST_CASES`, default 256 per property); run longer by hand with a larger count, e.g.
//! `PROPTEST_CASES=200000 cargo test -p bonsai-datasets --test fuzz --release`.

use bonsai_datasets::{detect, preview, records, validate, ValidateOptions};
use proptest::prelude::*;

/// Everything a user's file goes through.
fn parse_all(bytes: &[u8]) {
    let _ = detect(bytes);
    let _ = validate(bytes, &ValidateOptions::default());
    let _ = preview(bytes, 0, 20);
    if let Ok(all) = records(bytes) {
        for record in all.take(10_000) {
            let _ = record;
        }
    }
}

/// JSON-ish text: fragments of the shapes the parsers look for, glued with random separators.
fn jsonish() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{\"question\": ".to_owned()),
        Just("\"answer\": ".to_owned()),
        Just("{\"messages\": [{\"role\": \"user\", \"content\": ".to_owned()),
        Just("{\"instruction\": \"x\", \"output\": ".to_owned()),
        Just("{\"prompt\": \"p\", \"completion\": ".to_owned()),
        Just("question,answer\n".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        Just("\"\\ud800\"".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("}".to_owned()),
        Just(",".to_owned()),
        Just("\n".to_owned()),
        Just("\t".to_owned()),
        Just("\r\n".to_owned()),
        Just("\"".to_owned()),
        Just("\u{feff}".to_owned()),
        "\\PC{0,12}",
        "[0-9eE+.-]{1,8}",
    ];
    prop::collection::vec(piece, 0..64).prop_map(|pieces| pieces.concat())
}

proptest! {
    #[test]
    fn any_bytes_get_an_answer_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        parse_all(&bytes);
    }

    #[test]
    fn json_and_csv_lookalikes_get_an_answer_not_a_panic(text in jsonish()) {
        parse_all(text.as_bytes());
    }

    #[test]
    fn valid_lines_with_one_broken_byte_get_an_answer_not_a_panic(
        n in 1usize..40, at in any::<prop::sample::Index>(), byte in any::<u8>()
    ) {
        let mut bytes: Vec<u8> = (0..n)
            .flat_map(|i| format!("{{\"question\": \"q{i}\", \"answer\": \"a{i}\"}}\n").into_bytes())
            .collect();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        parse_all(&bytes);
    }
}
