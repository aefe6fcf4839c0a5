//! Content sniffing: reject non-text up front, then pick the container format from the first bytes.
//! The file name is never consulted: a zip renamed to `.jsonl` is still a zip.

use std::io::Read;

use crate::error::{DatasetError, NotTextReason};
use crate::record::Format;
use crate::source::Source;

/// How much of the start of the file the text checks look at.
pub(crate) const SNIFF_BYTES: usize = 64 * 1024;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// What the first bytes say about the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sniffed {
    pub(crate) format: Format,
    /// For CSV: `,` or `\t`, whichever the header line uses.
    pub(crate) delimiter: u8,
}

/// Checks the start of `src` and consumes a UTF-8 byte order mark if present.
pub(crate) fn sniff<R: Read>(src: &mut Source<R>) -> Result<Sniffed, DatasetError> {
    src.fill_to(SNIFF_BYTES)?;
    let sample = src.available();
    if let Some(reason) = magic(sample) {
        return Err(DatasetError::NotText(reason));
    }
    let bom = if sample.starts_with(UTF8_BOM) { UTF8_BOM.len() } else { 0 };
    src.consume(bom);
    let sample = &src.available()[..src.available().len().min(SNIFF_BYTES)];
    if looks_binary(sample) {
        return Err(DatasetError::NotText(NotTextReason::BinaryBytes));
    }
    if let Err(e) = std::str::from_utf8(sample) {
        // A multi-byte character cut by the sample's end is not an error; anything else is.
        let truncated = e.error_len().is_none() && sample.len() == SNIFF_BYTES;
        if !truncated {
            return Err(DatasetError::InvalidUtf8 { offset: (bom + e.valid_up_to()) as u64 });
        }
    }
    let Some(first) = sample.iter().position(|b| !b.is_ascii_whitespace()) else {
        if sample.len() < SNIFF_BYTES {
            return Err(DatasetError::Empty);
        }
        // 64 KiB of whitespace: keep looking rather than guess.
        return sniff_after_whitespace(src);
    };
    Ok(classify(sample, first))
}

fn sniff_after_whitespace<R: Read>(src: &mut Source<R>) -> Result<Sniffed, DatasetError> {
    loop {
        let avail = src.available();
        if let Some(i) = avail.iter().position(|b| !b.is_ascii_whitespace()) {
            src.consume(i);
            let sample = src.available();
            return Ok(classify(sample, 0));
        }
        let n = avail.len();
        src.consume(n);
        if src.is_eof() {
            return Err(DatasetError::Empty);
        }
        src.read_more()?;
    }
}

fn classify(sample: &[u8], first: usize) -> Sniffed {
    let format = match sample[first] {
        b'[' => Format::JsonArray,
        b'{' => Format::Jsonl,
        _ => Format::Csv,
    };
    let header = &sample[first..];
    let header = &header[..memchr::memchr(b'\n', header).unwrap_or(header.len())];
    let commas = memchr::memchr_iter(b',', header).count();
    let tabs = memchr::memchr_iter(b'\t', header).count();
    let delimiter = if tabs > commas { b'\t' } else { b',' };
    Sniffed { format, delimiter }
}

fn magic(sample: &[u8]) -> Option<NotTextReason> {
    const SIGNATURES: &[(&[u8], NotTextReason)] = &[
        (b"PK\x03\x04", NotTextReason::Zip),
        (b"PK\x05\x06", NotTextReason::Zip),
        (b"PK\x07\x08", NotTextReason::Zip),
        (b"\x1F\x8B", NotTextReason::Gzip),
        (b"\x7FELF", NotTextReason::Elf),
        (b"%PDF-", NotTextReason::Pdf),
        (b"\x89PNG", NotTextReason::Image),
        (b"\xFF\xD8\xFF", NotTextReason::Image),
        (b"GIF87a", NotTextReason::Image),
        (b"GIF89a", NotTextReason::Image),
        (b"\xFF\xFE", NotTextReason::Utf16),
        (b"\xFE\xFF", NotTextReason::Utf16),
    ];
    SIGNATURES.iter().find(|(sig, _)| sample.starts_with(sig)).map(|(_, reason)| *reason)
}

/// NUL anywhere in the sample, or more than 1% control bytes that text files do not use.
fn looks_binary(sample: &[u8]) -> bool {
    if memchr::memchr(0, sample).is_some() {
        return true;
    }
    let control =
        sample.iter().filter(|&&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C)) || b == 0x7F).count();
    control * 100 > sample.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff_bytes(bytes: &[u8]) -> Result<Sniffed, DatasetError> {
        sniff(&mut Source::new(bytes))
    }

    #[test]
    fn picks_the_format_from_the_first_non_blank_byte() {
        assert_eq!(sniff_bytes(b"\n  [{}]").unwrap().format, Format::JsonArray);
        assert_eq!(sniff_bytes(b"{\"a\":1}\n").unwrap().format, Format::Jsonl);
        let csv = sniff_bytes(b"question\tanswer\nq\ta\n").unwrap();
        assert_eq!((csv.format, csv.delimiter), (Format::Csv, b'\t'));
    }

    #[test]
    fn a_multibyte_character_cut_by_the_sample_end_is_not_an_error() {
        let mut bytes = vec![b'{'; SNIFF_BYTES - 1];
        bytes.extend_from_slice("é".as_bytes());
        assert_eq!(sniff_bytes(&bytes).unwrap().format, Format::Jsonl);
    }

    #[test]
    fn a_long_run_of_whitespace_before_content_is_skipped() {
        let mut bytes = vec![b' '; SNIFF_BYTES * 2];
        bytes.extend_from_slice(b"[]");
        assert_eq!(sniff_bytes(&bytes).unwrap().format, Format::JsonArray);
    }
}
