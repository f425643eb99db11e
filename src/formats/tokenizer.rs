//! A Hugging Face `tokenizer.json` (the `tokenizers` library, built without C dependencies so it
//! also runs in the page): text → token ids, ids → text for display.

use super::FormatError;

/// The tokenizer's file in a Hugging Face model folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

fn err(msg: impl Into<String>) -> FormatError {
    FormatError::Config { file: TOKENIZER_FILE.into(), msg: msg.into() }
}

impl TextTokenizer {
    pub fn parse(bytes: &[u8]) -> Result<TextTokenizer, FormatError> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| err(format!("not a tokenizer this library reads: {e}")))?;
        Ok(TextTokenizer { inner })
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The ids of `text`, with no special tokens added (GPT-2 adds none; `<|endoftext|>` written
    /// in the text is recognised as the special token).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, FormatError> {
        Ok(self.inner.encode(text, false).map_err(|e| err(format!("could not encode the text: {e}")))?.get_ids().to_vec())
    }

    /// The id of a special token such as `<|endoftext|>`, if the vocabulary has it.
    pub fn special_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Text of a run of ids.
    pub fn decode(&self, ids: &[u32]) -> Result<String, FormatError> {
        self.inner.decode(ids, false).map_err(|e| err(format!("could not decode ids: {e}")))
    }

    /// Each token's own text, for showing tokens one by one; concatenated they give the decoded
    /// text exactly. Byte-level BPE (GPT-2) tokens can split a UTF-8 character: its bytes are put
    /// on the token where the character completes, and a token holding only the first bytes of a
    /// character shows as "". Other tokenizers: each token decoded on its own.
    pub fn token_texts(&self, ids: &[u32]) -> Vec<String> {
        let byte_level: Option<Vec<Vec<u8>>> =
            ids.iter().map(|&id| self.inner.id_to_token(id).and_then(|t| byte_level_bytes(&t))).collect();
        let Some(pieces) = byte_level else {
            return ids.iter().map(|&id| self.inner.decode(&[id], false).unwrap_or_else(|_| "\u{FFFD}".into())).collect();
        };
        let mut pending: Vec<u8> = Vec::new();
        pieces
            .into_iter()
            .map(|bytes| {
                pending.extend(bytes);
                // The longest prefix of whole characters; an unfinished character waits.
                let valid = match std::str::from_utf8(&pending) {
                    Ok(_) => pending.len(),
                    Err(e) if e.error_len().is_none() => e.valid_up_to(),
                    // Bytes that can never form a character: shown as U+FFFD, as decode does.
                    Err(_) => pending.len(),
                };
                let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
                pending.drain(..valid);
                text
            })
            .collect()
    }
}

/// GPT-2's byte-level alphabet backwards (`bytes_to_unicode` in OpenAI's encoder.py): printable
/// bytes stand for themselves, the other 68 bytes for U+0100 onwards in order. `None` if a
/// character is outside the alphabet (not a byte-level token).
fn byte_level_bytes(token: &str) -> Option<Vec<u8>> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    token
        .chars()
        .map(|c| {
            let code = c as u32;
            if printable(code) {
                return Some(code as u8);
            }
            let index = code.checked_sub(256)?;
            (0u32..=255).filter(|&b| !printable(b)).nth(index as usize).map(|b| b as u8)
        })
        .collect()
}
