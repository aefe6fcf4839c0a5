//! Content that is not a dataset at all: rejected up front with a distinct error (issue 3's 415/422 cases).

use bonsai_datasets::{records, validate, DatasetError, ErrorClass, NotTextReason, RecordErrorKind, ValidateOptions};

fn rejected(bytes: &[u8]) -> DatasetError {
    validate(bytes, &ValidateOptions::default()).unwrap_err()
}

const GOOD: &str = "{\"question\":\"q\",\"answer\":\"a\"}\n";

#[test]
fn rejects_binary_content_with_a_jsonl_name_as_unsupported() {
    let bytes = b"{\"question\":\x00\x01\x02\x00\x00 binary\n";
    let e = rejected(bytes);
    assert!(matches!(e, DatasetError::NotText(NotTextReason::BinaryBytes)), "{e:?}");
    assert_eq!(e.class(), ErrorClass::UnsupportedContent);
    let elf = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00";
    assert!(matches!(rejected(elf), DatasetError::NotText(NotTextReason::Elf)));
    assert!(matches!(rejected(b"%PDF-1.7\n..."), DatasetError::NotText(NotTextReason::Pdf)));
    assert!(matches!(rejected(b"\x1f\x8b\x08\x00"), DatasetError::NotText(NotTextReason::Gzip)));
}

#[test]
fn rejects_a_zip_archive_by_its_magic_number() {
    let e = rejected(b"PK\x03\x04\x14\x00\x00\x00\x08\x00 data.jsonl");
    assert!(matches!(e, DatasetError::NotText(NotTextReason::Zip)), "{e:?}");
    assert_eq!(e.code(), "dataset_not_text");
    assert!(records(&b"PK\x05\x06"[..]).is_err());
}

#[test]
fn rejects_utf16_text() {
    let e = rejected(b"\xff\xfe{\x00\"\x00");
    assert!(matches!(e, DatasetError::NotText(NotTextReason::Utf16)), "{e:?}");
}

#[test]
fn rejects_invalid_utf8_at_the_start_as_unsupported() {
    let e = rejected(b"{\"question\":\"caf\xe9\",\"answer\":\"a\"}\n");
    assert!(matches!(e, DatasetError::InvalidUtf8 { offset: 16 }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::UnsupportedContent);
}

#[test]
fn an_empty_or_blank_file_is_a_validation_error() {
    for data in ["", "   \n\r\n\t", "\u{feff}", "[]", "[ \n ]", "question,answer\n"] {
        let e = rejected(data.as_bytes());
        assert!(matches!(e, DatasetError::Empty), "{data:?}: {e:?}");
        assert_eq!(e.class(), ErrorClass::Invalid);
    }
}

#[test]
fn rejects_text_in_no_known_format() {
    let e = rejected(b"Just some notes,\nnot a dataset.\n");
    assert!(matches!(e, DatasetError::UnknownFormat(_)), "{e:?}");
    assert_eq!(e.class(), ErrorClass::UnsupportedContent);
}

#[test]
fn an_io_failure_is_an_error_not_a_report() {
    struct Broken(usize);
    impl std::io::Read for Broken {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::other("disk gone"));
            }
            self.0 -= 1;
            let line = GOOD.as_bytes();
            let n = line.len().min(buf.len());
            buf[..n].copy_from_slice(&line[..n]);
            Ok(n)
        }
    }
    let e = validate(Broken(5000), &ValidateOptions::default()).unwrap_err();
    assert_eq!(e.class(), ErrorClass::Internal);
    let items: Vec<_> = records(Broken(5000)).unwrap().collect();
    assert_eq!(items.last().unwrap().as_ref().unwrap_err().kind, RecordErrorKind::Io);
}
