//! Characters that must never reach a terminal as themselves (SPEC §4),
//! shared by the server, which refuses them in names, and the client, which
//! shows them as visible escapes.
//!
//! They are the C0 and C1 controls and DEL (they move the cursor, clear the
//! screen, set the window title...) and the Unicode bidirectional marks,
//! embeddings, overrides and isolates (they reorder the text around them).

use std::fmt::Write;

/// Whether `c` would act on a terminal, or on the order of the text shown,
/// rather than be shown.
pub fn is_hidden_control(c: char) -> bool {
    c.is_control() // C0, DEL and C1: exactly U+0000-U+001F and U+007F-U+009F.
        || matches!(c,
            '\u{061C}'              // ARABIC LETTER MARK
            | '\u{200E}' | '\u{200F}' // LEFT-TO-RIGHT and RIGHT-TO-LEFT MARK
            | '\u{202A}'..='\u{202E}' // embeddings, overrides and their POP
            | '\u{2066}'..='\u{2069}' // isolates and their POP
        )
}

/// `text` with every [`is_hidden_control`] character written as an escape
/// that shows what it was: `\x1b` for ESC, `\x9b` for the C1 CSI,
/// `\u{202e}` for RIGHT-TO-LEFT OVERRIDE. Everything else is kept as is.
pub fn visible(text: &str) -> String {
    if !text.chars().any(is_hidden_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        let code = u32::from(c);
        // Writing into a String cannot fail.
        if !is_hidden_control(c) {
            out.push(c);
        } else if code <= 0xFF {
            let _ = write!(out, "\\x{code:02x}");
        } else {
            let _ = write!(out, "\\u{{{code:x}}}");
        }
    }
    out
}

/// Whether a name (of a user or a group) is acceptable: something other
/// than white space, and nothing that would act on a terminal.
pub fn is_fit_name(name: &str) -> bool {
    !name.trim().is_empty() && !name.chars().any(is_hidden_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_become_escapes() {
        assert_eq!(visible("\u{1b}[31mRED\u{1b}[0m"), "\\x1b[31mRED\\x1b[0m");
        assert_eq!(visible("a\u{7}b\u{8}c\rd\u{7f}e\n\t\0"), "a\\x07b\\x08c\\x0dd\\x7fe\\x0a\\x09\\x00");
        assert_eq!(visible("\u{9b}2J \u{85}"), "\\x9b2J \\x85");
    }

    #[test]
    fn bidi_marks_become_escapes() {
        assert_eq!(visible("abc\u{202e}fed"), "abc\\u{202e}fed");
        for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'] {
            assert!(is_hidden_control(c), "{:x}", u32::from(c));
        }
        assert_eq!(visible("\u{200e}\u{200f}\u{61c}"), "\\u{200e}\\u{200f}\\u{61c}");
    }

    #[test]
    fn ordinary_text_is_kept() {
        for text in ["", "hello", "群消息 ü é 😀", "a:b\\x1b", "tab-less  spaces ", "\u{a0}nbsp \u{2065}"] {
            assert_eq!(visible(text), text);
        }
        // Nothing that acts on a terminal is left.
        let hostile: String = (0..0xA0u32).chain(0x2000..0x2070).filter_map(char::from_u32).collect();
        assert!(!visible(&hostile).chars().any(is_hidden_control));
    }

    #[test]
    fn names() {
        assert!(is_fit_name("li"));
        assert!(is_fit_name(" li wang "));
        assert!(is_fit_name("群"));
        assert!(!is_fit_name(""));
        assert!(!is_fit_name("   "));
        assert!(!is_fit_name("\u{3000}\u{a0}"));
        assert!(!is_fit_name("ev\u{1b}]0;owned\u{7}il"));
        assert!(!is_fit_name("li\u{202e}"));
        assert!(!is_fit_name("li\n"));
    }
}
