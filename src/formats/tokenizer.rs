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
    /// character shows as "". Other tokenizers (SentencePiece-style `▁` with byte fallback: Gemma,
    /// Llama 2): each token is what it adds to the decoded prefix, so the tokenizer's own decoder
    /// decides spaces and a character split over `<0xNN>` byte tokens shows on its last byte.
    pub fn token_texts(&self, ids: &[u32]) -> Vec<String> {
        // Byte-level BPE is known by its decoder (GPT-2, GPT-NeoX, Llama 3, Qwen).
        let is_byte_level = matches!(self.inner.get_decoder(), Some(tokenizers::DecoderWrapper::ByteLevel(_)));
        let byte_level: Option<Vec<Vec<u8>>> = if is_byte_level {
            ids.iter().map(|&id| self.inner.id_to_token(id).and_then(|t| byte_level_bytes(&t))).collect()
        } else {
            None
        };
        let Some(pieces) = byte_level else {
            return self.incremental_texts(ids);
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

impl TextTokenizer {
    /// Each token's text as what it adds to the decoded prefix (see `token_texts`).
    fn incremental_texts(&self, ids: &[u32]) -> Vec<String> {
        let mut shown = String::new();
        (0..ids.len())
            .map(|i| {
                let full = self.inner.decode(&ids[..=i], false).unwrap_or_else(|_| format!("{shown}\u{FFFD}"));
                // A character whose byte tokens have not all come yet decodes as U+FFFD: wait for it.
                let unfinished = full.ends_with('\u{FFFD}') && i + 1 < ids.len() && self.is_byte_token(ids[i]);
                if unfinished {
                    return String::new();
                }
                let piece = match full.strip_prefix(shown.as_str()) {
                    Some(rest) => rest.to_string(),
                    // The decoder rewrote earlier text (it cannot, for the decoders saelab reads): show the token alone.
                    None => self.inner.decode(&ids[i..=i], false).unwrap_or_default(),
                };
                shown = full;
                piece
            })
            .collect()
    }

    /// Whether `id` is a SentencePiece byte-fallback token (`<0x41>`).
    fn is_byte_token(&self, id: u32) -> bool {
        self.inner.id_to_token(id).is_some_and(|t| t.len() == 6 && t.starts_with("<0x") && t.ends_with('>'))
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
