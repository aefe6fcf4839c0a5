//! Stop texts of one row: the streamed text is held back while it could still be the start of a stop text,
//! and cut where a stop text appears, so a client never sees any part of one.

/// The text decided so far and what is held back.
#[derive(Debug, Default)]
pub(crate) struct StopText {
    stops: Vec<String>,
    /// Text released to the client.
    sent: String,
    /// Text decoded but not released: it ends with the beginning of some stop text.
    held: String,
}

/// What a new piece of text led to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Released {
    /// Text to stream now (possibly empty).
    More(String),
    /// A stop text appeared: stream this last text; the generation ends.
    Stopped(String),
}

impl StopText {
    /// Stop texts (empty ones ignored).
    pub(crate) fn new(stops: &[String]) -> Self {
        StopText { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), ..StopText::default() }
    }

    /// Whether there is any stop text to look for.
    pub(crate) fn active(&self) -> bool {
        !self.stops.is_empty()
    }

    /// Takes the next piece of decoded text.
    pub(crate) fn push(&mut self, piece: &str) -> Released {
        self.held.push_str(piece);
        // A stop text may begin in the text already sent only if that text was released while it could not
        // be a stop's beginning; so searching from the held text's start, with the sent tail, is enough.
        let tail = self.stops.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut from = self.sent.len().saturating_sub(tail);
        while !self.sent.is_char_boundary(from) {
            from -= 1;
        }
        let window = format!("{}{}", &self.sent[from..], self.held);
        let found = self.stops.iter().filter_map(|s| window.find(s.as_str())).min();
        if let Some(at) = found {
            let cut = (from + at).max(self.sent.len()) - self.sent.len();
            let last = self.held[..cut].to_string();
            self.sent.push_str(&last);
            self.held.clear();
            return Released::Stopped(last);
        }
        let keep = self.held_suffix();
        let release = self.held.len() - keep;
        let out: String = self.held.drain(..release).collect();
        self.sent.push_str(&out);
        Released::More(out)
    }

    /// Text held back at the end of the generation (no stop text came after all).
    pub(crate) fn flush(&mut self) -> String {
        let rest = std::mem::take(&mut self.held);
        self.sent.push_str(&rest);
        rest
    }

    /// The text released, stop text excluded.
    pub(crate) fn text(&self) -> &str {
        &self.sent
    }

    /// Length of the longest end of the held text that begins some stop text.
    fn held_suffix(&self) -> usize {
        let h = &self.held;
        (1..=h.len())
            .rev()
            .filter(|&n| h.is_char_boundary(h.len() - n))
            .find(|&n| self.stops.iter().any(|s| s.starts_with(&h[h.len() - n..])))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(list: &[&str]) -> StopText {
        StopText::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn text_that_may_begin_a_stop_is_held_until_it_cannot() {
        let mut s = stops(&["\nUser:"]);
        assert_eq!(s.push("Hello"), Released::More("Hello".into()));
        assert_eq!(s.push(" there\nUs"), Released::More(" there".into()));
        assert_eq!(s.push("eful"), Released::More("\nUseful".into()));
        assert_eq!(s.flush(), "");
        assert_eq!(s.text(), "Hello there\nUseful");
    }

    #[test]
    fn a_stop_split_over_pieces_ends_the_text_before_it() {
        let mut s = stops(&["END", "\n\n"]);
        assert_eq!(s.push("one E"), Released::More("one ".into()));
        assert_eq!(s.push("N"), Released::More(String::new()));
        assert_eq!(s.push("D and more"), Released::Stopped(String::new()));
        assert_eq!(s.text(), "one ");
    }

    #[test]
    fn the_earliest_stop_in_a_piece_wins_and_multibyte_text_is_cut_on_boundaries() {
        let mut s = stops(&["é!", "x"]);
        assert_eq!(s.push("café"), Released::More("caf".into()));
        assert_eq!(s.push("!x"), Released::Stopped(String::new()));
        assert_eq!(s.text(), "caf");
        let mut s = stops(&["b"]);
        assert_eq!(s.push("aébc"), Released::Stopped("aé".into()));
    }

    #[test]
    fn without_stops_everything_is_released_at_once() {
        let mut s = stops(&[""]);
        assert!(!s.active());
        assert_eq!(s.push("abc"), Released::More("abc".into()));
    }
}
