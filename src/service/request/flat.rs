//! The fast path of request parsing: one flat JSON object whose values are
//! strings without escapes, integers or `null`, which is what clients send
//! for chat. It reads such a frame in one pass, with no allocation.
//!
//! It never gives a verdict: anything outside that shape (an escape, a
//! float, `true`, a nested value, bad syntax, invalid UTF-8) returns None
//! and goes to serde_json, which reads or refuses it. What this accepts,
//! serde_json accepts too and reads into the same [`Fields`] (tested side
//! by side in `tests`).

use std::borrow::Cow;

use super::{Fields, Scalar};
use crate::service::protocol;

/// Digits at most in an integer read here: anything below 10^18 fits an
/// i64 either way; longer ones go to serde_json, which decides.
const MAX_DIGITS: usize = 18;

/// The fields of `frame` if it is a flat object this path reads.
pub(super) fn fields(frame: &[u8]) -> Option<Fields<'_>> {
    // Checked once for the whole frame: a string's text then ends at an
    // ASCII quote, which never splits a character.
    let text = std::str::from_utf8(frame).ok()?;
    let mut s = Scanner { text, bytes: frame, at: 0 };
    let mut fields = Fields::default();
    s.skip_space();
    s.expect(b'{')?;
    s.skip_space();
    if s.peek() == Some(b'}') {
        s.at += 1;
    } else {
        loop {
            s.skip_space();
            let key = s.string()?;
            s.skip_space();
            s.expect(b':')?;
            s.skip_space();
            let value = s.value()?;
            // A later duplicate wins, as in serde_json's own maps.
            if let Some(slot) = fields.slot(key) {
                *slot = value;
            }
            s.skip_space();
            match s.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.skip_space();
    (s.at == frame.len()).then_some(fields)
}

/// A cursor over one frame.
struct Scanner<'a> {
    /// The frame, valid UTF-8.
    text: &'a str,
    /// The same, as bytes.
    bytes: &'a [u8],
    /// Index of the next byte to read.
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// JSON's whitespace, the same four bytes serde_json skips.
    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\t' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string with no escapes and no control characters, as UTF-8.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let end = start + protocol::needs_escape(&self.bytes[start..])?;
        if self.bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        self.text.get(start..end)
    }

    fn value(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => Some(Scalar::Str(Cow::Borrowed(self.string()?))),
            b'-' | b'0'..=b'9' => self.integer(),
            b'n' if self.bytes[self.at..].starts_with(b"null") => {
                self.at += 4;
                Some(Scalar::Absent)
            }
            _ => None,
        }
    }

    /// An integer as JSON writes one: no leading zero, no fraction or
    /// exponent (those are floats to serde_json), and not `-0` (a float to
    /// serde_json too).
    fn integer(&mut self) -> Option<Scalar<'a>> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        let digits = &self.bytes[start..self.at];
        let leading_zero = digits.first() == Some(&b'0') && (digits.len() > 1 || negative);
        if digits.is_empty() || digits.len() > MAX_DIGITS || leading_zero {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let magnitude = digits.iter().fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
        Some(Scalar::Int(if negative { -magnitude } else { magnitude }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::visitor;

    /// Whenever the fast path reads a frame, serde_json reads it the same.
    fn agrees(frame: &[u8]) -> bool {
        match super::fields(frame) {
            Some(fast) => {
                let slow = visitor::fields(frame)
                    .unwrap_or_else(|e| panic!("fast path read what serde_json refuses ({e}): {frame:?}"));
                assert_eq!(fast, slow, "{:?}", String::from_utf8_lossy(frame));
                true
            }
            None => false,
        }
    }

    #[test]
    fn reads_chat_frames_and_leaves_the_rest_to_serde() {
        for read in [
            r#"{"msgid":6,"toid":2,"msg":"hi"}"#,
            " {\t\"msgid\" : 10 ,\n\"groupid\":-7,\"msg\":\"你好 😀 \u{7f}\"}\r\n",
            r#"{"msgid":6,"toid":1,"toid":3,"msg":null,"msg":"m","other":"x","n":0}"#,
            r#"{}"#,
            r#"{"msgid":999999999999999999}"#,
        ] {
            assert!(agrees(read.as_bytes()), "not read by the fast path: {read}");
        }
        for left in [
            r#"{"msgid":6,"toid":2,"msg":"a\"b"}"#,
            r#"{"msgid":6,"toid":2,"msg":"\u0041"}"#,
            r#"{"msgid":6.0}"#,
            r#"{"msgid":6e0}"#,
            r#"{"msgid":-0}"#,
            r#"{"msgid":01}"#,
            r#"{"msgid":1000000000000000000}"#,
            r#"{"msgid":true}"#,
            r#"{"msgid":[6]}"#,
            r#"{"msgid":6,}"#,
            r#"{"msgid":6} x"#,
            r#"{"msgid":nul}"#,
            r#"{"msgid":nullx}"#,
            "{\"msg\":\"tab\there\"}",
            "",
            "[]",
            "{",
        ] {
            assert!(!agrees(left.as_bytes()), "the fast path read {left}");
        }
        assert!(!agrees(b"{\"msg\":\"\xff\"}"), "the fast path read invalid UTF-8");
    }

    /// Mutations of chat frames (bytes replaced, dropped, doubled, from the
    /// characters that matter to JSON): every one the fast path reads,
    /// serde_json reads the same.
    #[test]
    fn agrees_with_serde_on_mutated_frames() {
        let seeds: [&[u8]; 3] = [
            br#"{"msgid":6,"id":12,"toid":-34,"msg":"hello there","name":"li"}"#,
            b" { \"msgid\" : 10 , \"groupid\" : 5 , \"msg\" : \"\xe4\xbd\xa0\xe5\xa5\xbd\" , \"x\" : null } ",
            br#"{"msgid":1,"id":3,"token":"abc","password":"pw"}"#,
        ];
        let alphabet = b"{}[]:,\"\\ -+.0123456789eEnulltrx\t\n\x00\x1f\x7f\xc3\xa9\xff";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut random = |below: usize| {
            // xorshift64: a fixed sequence, so a failure reproduces.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        let mut read = 0;
        for round in 0..30_000 {
            let mut frame = seeds[round % seeds.len()].to_vec();
            for _ in 0..=random(3) {
                let at = random(frame.len());
                match random(3) {
                    0 => frame[at] = alphabet[random(alphabet.len())],
                    1 => {
                        frame.remove(at);
                    }
                    _ => frame.insert(at, alphabet[random(alphabet.len())]),
                }
                if frame.is_empty() {
                    break;
                }
            }
            read += usize::from(agrees(&frame));
        }
        assert!(read > 1_000, "too few mutated frames took the fast path to compare: {read}");
    }
}
