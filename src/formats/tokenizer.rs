//! A Hugging Face `tokenizer.json` (the `tokenizers` library, built without C dependencies so it
//! also runs in the page): text → token ids, ids → text for display.

use super::FormatError;

pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

fn err(msg: impl Into<String>) -> FormatError {
    FormatError::Config { file: super::gpt2_files::TOKENIZER_FILE.into(), msg: msg.into() }
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

    /// Text of a run of ids.
    pub fn decode(&self, ids: &[u32]) -> Result<String, FormatError> {
        self.inner.decode(ids, false).map_err(|e| err(format!("could not decode ids: {e}")))
    }

    /// Each token's own text, for showing tokens one by one. A byte-level token that is only part
    /// of a UTF-8 character shows as U+FFFD.
    pub fn token_texts(&self, ids: &[u32]) -> Vec<String> {
        ids.iter().map(|&id| self.inner.decode(&[id], false).unwrap_or_else(|_| "\u{FFFD}".into())).collect()
    }
}
