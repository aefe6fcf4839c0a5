//! Incremental detokenization: turns a growing list of token ids into text pieces as they become complete.
//! Byte-level BPE tokens can split a UTF-8 character, and some tokenizers change earlier text when later
//! tokens arrive (leading-space rules), so each step decodes a short window and emits only the settled suffix.

/// Tracks what of the token list has been emitted.
#[derive(Debug, Default)]
pub(crate) struct TextStream {
    tokens: Vec<u32>,
    /// Start of the window decoded for context.
    prefix_offset: usize,
    /// Tokens before this index are already emitted.
    read_offset: usize,
}

impl TextStream {
    /// Adds a token; returns the new text it completes (possibly empty).
    pub(crate) fn push<E>(&mut self, token: u32, decode: impl Fn(&[u32]) -> Result<String, E>) -> Result<String, E> {
        self.tokens.push(token);
        let prefix = decode(&self.tokens[self.prefix_offset..self.read_offset])?;
        let full = decode(&self.tokens[self.prefix_offset..])?;
        if full.len() > prefix.len() && !full.ends_with('\u{FFFD}') && full.starts_with(&prefix) {
            let piece = full[prefix.len()..].to_string();
            self.prefix_offset = self.read_offset;
            self.read_offset = self.tokens.len();
            Ok(piece)
        } else {
            Ok(String::new())
        }
    }

    /// Text still held back at the end (an incomplete character at the very end of generation).
    pub(crate) fn flush<E>(&mut self, decode: impl Fn(&[u32]) -> Result<String, E>) -> Result<String, E> {
        if self.read_offset == self.tokens.len() {
            return Ok(String::new());
        }
        let prefix = decode(&self.tokens[self.prefix_offset..self.read_offset])?;
        let full = decode(&self.tokens[self.prefix_offset..])?;
        self.read_offset = self.tokens.len();
        Ok(full.get(prefix.len()..).unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level toy vocabulary: token i is byte i.
    fn decode(tokens: &[u32]) -> Result<String, ()> {
        let bytes: Vec<u8> = tokens.iter().map(|&t| t as u8).collect();
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    #[test]
    fn a_split_multibyte_character_is_emitted_once_complete() {
        let mut s = TextStream::default();
        let mut out = Vec::new();
        for b in "aé!".bytes() {
            out.push(s.push(b as u32, decode).unwrap());
        }
        assert_eq!(out, vec!["a", "", "é", "!"]);
        assert_eq!(s.flush(decode).unwrap(), "");
    }

    #[test]
    fn flush_returns_what_was_held_back() {
        let mut s = TextStream::default();
        assert_eq!(s.push(b'x' as u32, decode).unwrap(), "x");
        assert_eq!(s.push(0xC3, decode).unwrap(), "");
        assert_eq!(s.flush(decode).unwrap(), "\u{FFFD}");
    }
}
