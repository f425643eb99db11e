//! A text corpus to harvest activations from: UTF-8 text, refused with a message when it is
//! empty, binary or not UTF-8 (SAE training on the bytes of an image would run and teach nothing).

use super::FormatError;

/// The largest corpus read at once (the page holds it in memory, tokenized).
pub const MAX_CORPUS_BYTES: usize = 256 << 20;

/// The text of a corpus file named `file`.
pub fn parse_corpus(file: &str, bytes: &[u8]) -> Result<String, FormatError> {
    let err = |msg: String| FormatError::Corpus { file: file.into(), msg };
    if bytes.len() > MAX_CORPUS_BYTES {
        return Err(err(format!(
            "{} MB is more than the {} MB a corpus may hold; take a part of it",
            bytes.len() >> 20,
            MAX_CORPUS_BYTES >> 20
        )));
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(err(format!("a binary file, not text (a zero byte at offset {at})")));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| err(format!("not UTF-8 text (invalid bytes at offset {})", e.valid_up_to())))?;
    let controls = text.chars().filter(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}')).count();
    if controls * 20 > text.chars().count().max(1) {
        return Err(err(format!("{controls} control characters: a binary file, not text")));
    }
    if text.trim().is_empty() {
        return Err(err("empty (no text to train on)".into()));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_read_and_bad_corpora_are_refused_by_name() {
        assert_eq!(parse_corpus("a.txt", "In the beginning\n".as_bytes()).unwrap(), "In the beginning\n");
        let msg = |bytes: &[u8]| parse_corpus("c.txt", bytes).unwrap_err().to_string();
        assert!(msg(b"").contains("c.txt: empty"));
        assert!(msg(b"  \n\t ").contains("empty"));
        assert!(msg(b"PK\x03\x04\x00\x00zip").contains("binary file"));
        assert!(msg(b"caf\xe9 au lait").contains("not UTF-8 text (invalid bytes at offset 3)"));
        // Truncated in the middle of a multi-byte character.
        assert!(msg(&"東京".as_bytes()[..4]).contains("not UTF-8"));
        assert!(msg(&[0x1b; 100]).contains("control characters"));
        assert!(msg(&vec![b'a'; MAX_CORPUS_BYTES + 1]).contains("more than"));
    }
}
