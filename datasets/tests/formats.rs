//! Every container format with every record shape, normalised to the same records.

use bonsai_datasets::{
    detect, preview, records, validate, Format, Message, Record, Role, Shape, ValidateOptions, MAX_PREVIEW_LIMIT,
};

fn read_all(bytes: &[u8]) -> Vec<Record> {
    records(bytes).unwrap().collect::<Result<Vec<_>, _>>().unwrap()
}

fn report(bytes: &[u8]) -> bonsai_datasets::ValidationReport {
    validate(bytes, &ValidateOptions::default()).unwrap()
}

fn chat(pairs: &[(Role, &str)]) -> Record {
    Record { messages: pairs.iter().map(|(role, c)| Message { role: *role, content: c.to_string() }).collect() }
}

#[test]
fn reads_question_answer_jsonl() {
    let data =
        b"{\"question\":\"2+2?\",\"answer\":\"4\"}\n{\"question\":\"Capital of France?\",\"answer\":\"Paris\"}\n";
    assert_eq!(
        read_all(data),
        vec![Record::question_answer("2+2?", "4"), Record::question_answer("Capital of France?", "Paris")]
    );
    let r = report(data);
    assert_eq!((r.format, r.shape, r.record_count, r.valid), (Format::Jsonl, Some(Shape::QuestionAnswer), 2, true));
}

#[test]
fn reads_prompt_response_as_question_answer() {
    let data = br#"{"prompt":"hi","response":"hello","id":7,"meta":{"x":[1,2]}}"#;
    assert_eq!(read_all(data), vec![Record::question_answer("hi", "hello")]);
    assert_eq!(detect(&data[..]).unwrap().shape, Some(Shape::QuestionAnswer));
}

#[test]
fn reads_openai_legacy_prompt_completion_as_question_answer() {
    let data = concat!(
        "{\"prompt\":\"What is Bonsai?\",\"completion\":\"A platform.\"}\n",
        "{\"prompt\":\"2+2?\",\"completion\":\"4\"}\n"
    );
    let expected =
        vec![Record::question_answer("What is Bonsai?", "A platform."), Record::question_answer("2+2?", "4")];
    assert_eq!(read_all(data.as_bytes()), expected);
    let r = report(data.as_bytes());
    assert_eq!((r.shape, r.record_count, r.valid), (Some(Shape::QuestionAnswer), 2, true));
    // The same as CSV.
    assert_eq!(read_all(b"prompt,completion\nWhat is Bonsai?,A platform.\n2+2?,4\n"), expected);
    // A prompt with neither answer field names both.
    let r = report(br#"{"prompt":"alone"}"#);
    assert!(!r.valid);
    assert!(r.errors[0].message.contains("`completion`"), "{:?}", r.errors);
}

#[test]
fn reads_alpaca_with_and_without_input() {
    let data = concat!(
        r#"{"instruction":"Translate","input":"chat","output":"cat"}"#,
        "\n",
        r#"{"instruction":"Say hi","input":"","output":"hi"}"#,
        "\n",
        r#"{"instruction":"Say bye","output":"bye"}"#,
        "\n"
    );
    let got = read_all(data.as_bytes());
    assert_eq!(got[0], Record::question_answer("Translate\n\nchat", "cat"));
    assert_eq!(got[1], Record::question_answer("Say hi", "hi"));
    assert_eq!(got[2], Record::question_answer("Say bye", "bye"));
    assert_eq!(report(data.as_bytes()).shape, Some(Shape::Alpaca));
}

#[test]
fn reads_openai_chat_messages() {
    let data = r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi \"there\""},{"role":"assistant","content":"Hello","weight":1}]}"#;
    let expected = chat(&[(Role::System, "Be brief."), (Role::User, "Hi \"there\""), (Role::Assistant, "Hello")]);
    assert_eq!(read_all(data.as_bytes()), vec![expected]);
    assert_eq!(report(data.as_bytes()).shape, Some(Shape::Chat));
}

#[test]
fn reads_a_json_array_of_any_shape() {
    let data = "[\n  {\"question\": \"a\", \"answer\": \"b\"},\n  {\"question\": \"c\",\n   \"answer\": \"d\"}\n]\n";
    assert_eq!(read_all(data.as_bytes()), vec![Record::question_answer("a", "b"), Record::question_answer("c", "d")]);
    let r = report(data.as_bytes());
    assert_eq!((r.format, r.record_count), (Format::JsonArray, 2));

    let chats = r#"[{"messages":[{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}]"#;
    assert_eq!(read_all(chats.as_bytes()), vec![chat(&[(Role::User, "u"), (Role::Assistant, "a")])]);
    let alpaca = r#"[{"instruction":"i","output":"o"}]"#;
    assert_eq!(report(alpaca.as_bytes()).shape, Some(Shape::Alpaca));
}

#[test]
fn reads_csv_of_each_shape_with_quoting_and_case_insensitive_headers() {
    let qa = "Question,Answer\n\"Hello, world?\",\"Line one\nline two \"\"quoted\"\"\"\nq2,a2\n";
    assert_eq!(
        read_all(qa.as_bytes()),
        vec![
            Record::question_answer("Hello, world?", "Line one\nline two \"quoted\""),
            Record::question_answer("q2", "a2")
        ]
    );
    let r = report(qa.as_bytes());
    assert_eq!((r.format, r.shape), (Format::Csv, Some(Shape::QuestionAnswer)));

    let alpaca = "instruction,input,output\nTranslate,chat,cat\nSay hi,,hi\n";
    assert_eq!(
        read_all(alpaca.as_bytes()),
        vec![Record::question_answer("Translate\n\nchat", "cat"), Record::question_answer("Say hi", "hi")]
    );

    let chat_csv = "messages\n\"[{\"\"role\"\":\"\"user\"\",\"\"content\"\":\"\"u\"\"},{\"\"role\"\":\"\"assistant\"\",\"\"content\"\":\"\"a\"\"}]\"\n";
    assert_eq!(read_all(chat_csv.as_bytes()), vec![chat(&[(Role::User, "u"), (Role::Assistant, "a")])]);
}

#[test]
fn reads_tab_separated_files() {
    let tsv = "prompt\tresponse\nhi\thello\n";
    assert_eq!(read_all(tsv.as_bytes()), vec![Record::question_answer("hi", "hello")]);
}

#[test]
fn strips_a_byte_order_mark_in_every_format() {
    for data in [
        "\u{feff}{\"question\":\"q\",\"answer\":\"a\"}\n",
        "\u{feff}[{\"question\":\"q\",\"answer\":\"a\"}]",
        "\u{feff}question,answer\nq,a\n",
    ] {
        assert_eq!(read_all(data.as_bytes()), vec![Record::question_answer("q", "a")], "{data:?}");
    }
}

#[test]
fn handles_crlf_line_endings_and_blank_lines() {
    let jsonl = "{\"question\":\"q\",\"answer\":\"a\"}\r\n\r\n{\"question\":\"q2\",\"answer\":\"a2\"}\r\n";
    assert_eq!(
        read_all(jsonl.as_bytes()),
        vec![Record::question_answer("q", "a"), Record::question_answer("q2", "a2")]
    );
    let csv = "question,answer\r\nq,a\r\nq2,a2\r\n";
    assert_eq!(read_all(csv.as_bytes()), vec![Record::question_answer("q", "a"), Record::question_answer("q2", "a2")]);
    // An error on the second record names line 3: the blank line still counts.
    let bad = "{\"question\":\"q\",\"answer\":\"a\"}\r\n\r\n{\"question\":\"q2\"}\r\n";
    assert_eq!(report(bad.as_bytes()).errors[0].line, 3);
}

#[test]
fn a_file_without_a_trailing_newline_keeps_its_last_record() {
    let data = "{\"question\":\"q\",\"answer\":\"a\"}\n{\"question\":\"last\",\"answer\":\"x\"}";
    assert_eq!(read_all(data.as_bytes()).len(), 2);
}

#[test]
fn decodes_escapes_and_unicode() {
    let data = r#"{"question":"caf\u00e9 \n tab\t","answer":"日本語 🌲"}"#;
    assert_eq!(read_all(data.as_bytes()), vec![Record::question_answer("café \n tab\t", "日本語 🌲")]);
}

#[test]
fn preview_pages_through_valid_records_and_clamps_the_limit() {
    let mut data = String::new();
    for i in 0..250 {
        if i == 3 {
            data.push_str("{broken\n");
        }
        data.push_str(&format!("{{\"question\":\"q{i}\",\"answer\":\"a{i}\"}}\n"));
    }
    let page = preview(data.as_bytes(), 10, 5).unwrap();
    let questions: Vec<_> = page.iter().map(|r| r.messages[0].content.clone()).collect();
    assert_eq!(questions, ["q10", "q11", "q12", "q13", "q14"]);
    assert_eq!(preview(data.as_bytes(), 0, 1000).unwrap().len(), MAX_PREVIEW_LIMIT);
    assert_eq!(preview(data.as_bytes(), 245, 100).unwrap().len(), 5);
    assert!(preview(data.as_bytes(), 1000, 10).unwrap().is_empty());
}

#[test]
fn preview_stops_reading_once_the_page_is_full() {
    // Valid records, then bytes that would fail if they were read.
    let mut data = b"{\"question\":\"q\",\"answer\":\"a\"}\n".repeat(3);
    data.extend(std::iter::repeat_n(b'x', 3 * 1024 * 1024));
    let reader = std::io::Read::chain(&data[..], FailingReader);
    assert_eq!(preview(reader, 0, 2).unwrap().len(), 2);
}

struct FailingReader;
impl std::io::Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("read past the page"))
    }
}

#[test]
fn the_records_iterator_reports_bad_records_and_goes_on() {
    let data = "{\"question\":\"q\",\"answer\":\"a\"}\nnot json\n{\"question\":\"q2\",\"answer\":\"a2\"}\n";
    let items: Vec<_> = records(data.as_bytes()).unwrap().collect();
    assert!(items[0].is_ok() && items[2].is_ok());
    assert_eq!(items[1].as_ref().unwrap_err().line, 2);
}

#[test]
fn detects_format_and_shape_after_leading_bad_records() {
    let data = "{garbage that is not json\n{\"instruction\":\"i\",\"output\":\"o\"}\n";
    let d = detect(data.as_bytes()).unwrap();
    assert_eq!((d.format, d.shape), (Format::Jsonl, Some(Shape::Alpaca)));
}

#[test]
fn records_can_move_to_a_training_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<bonsai_datasets::Records<std::fs::File>>();
}
