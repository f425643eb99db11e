//! The page's pure logic — link state and form parsing — compiled for every target, so `cargo
//! test` runs it natively; `ui` (wasm only) renders the page and calls these.

use crate::model::decoder::DecoderConfig;
use crate::train::policy::{parse_count, parse_positive, TrainPlan, TrainSettings};

/// What a `#lm?base=…&repo=…` link asks the language-model tab to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmLink {
    /// The Hub (or a stand-in in its layout) models are downloaded from.
    pub base: String,
    /// The model repository.
    pub repo: String,
    /// Whether the link named a repository (else the tab opens on the bundled model).
    pub repo_named: bool,
}

impl LmLink {
    pub const DEFAULT_BASE: &'static str = "https://huggingface.co";
    pub const DEFAULT_REPO: &'static str = "gpt2";

    /// Reads a location hash (`#lm?base=…&repo=…`; anything else gives the defaults). Unknown keys
    /// and pairs without `=` are ignored; a key given twice keeps its last value.
    pub fn parse(hash: &str) -> LmLink {
        let query = hash.strip_prefix("#lm").unwrap_or("").trim_start_matches('?');
        let mut link = LmLink { base: Self::DEFAULT_BASE.into(), repo: Self::DEFAULT_REPO.into(), repo_named: false };
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            match k {
                "base" => link.base = percent_decoded(v),
                "repo" => {
                    link.repo = percent_decoded(v);
                    link.repo_named = true;
                }
                _ => {}
            }
        }
        link
    }
}

/// `%XX` escapes decoded (as `encodeURIComponent` writes them, `+` left alone); a malformed escape
/// or bytes that are not UTF-8 are kept as written.
fn percent_decoded(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| v.to_string())
}

/// The training panel's form as typed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainForm {
    pub hook: String,
    pub arch: String,
    pub k: String,
    pub dict: String,
    pub tokens: String,
    pub batch: String,
    pub lr: String,
}

/// The largest dictionary and batch the page trains (the CLI has no such limit).
pub const PAGE_MAX_DICT: usize = 65_536;
pub const PAGE_MAX_BATCH: usize = 8192;

impl TrainForm {
    /// The form through the one training policy (`train::policy`), with the page's own limits on
    /// top; the first setting that is wrong is named.
    pub fn plan(&self, model: &DecoderConfig) -> Result<TrainPlan, String> {
        let settings = TrainSettings {
            hook: self.hook.clone(),
            arch: self.arch.clone(),
            k: parse_count("k", &self.k)?,
            dict: parse_count("dict", &self.dict)?,
            tokens: parse_count("tokens", &self.tokens)?,
            batch: parse_count("batch", &self.batch)?,
            lr: parse_positive("lr", &self.lr)?,
            ..TrainSettings::default()
        };
        if settings.dict > PAGE_MAX_DICT || settings.batch > PAGE_MAX_BATCH {
            return Err("the page trains dictionaries of at most 65,536 latents with batches of at most 8192".into());
        }
        settings.plan(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_name_a_model_or_fall_back_to_the_bundled_one() {
        let bundled = LmLink::parse("#lm");
        assert_eq!((bundled.base.as_str(), bundled.repo.as_str(), bundled.repo_named), ("https://huggingface.co", "gpt2", false));
        assert_eq!(LmLink::parse(""), bundled);
        assert_eq!(LmLink::parse("#lab?features=5"), bundled);
        let named = LmLink::parse("#lm?base=http://127.0.0.1:9000/hub&repo=openai-community/gpt2&x=1&junk");
        assert_eq!(named.base, "http://127.0.0.1:9000/hub");
        assert_eq!((named.repo.as_str(), named.repo_named), ("openai-community/gpt2", true));
        assert_eq!(LmLink::parse("#lm?repo=a&repo=b").repo, "b");
        // encodeURIComponent's escapes are decoded; malformed ones are kept as written.
        let encoded = LmLink::parse("#lm?base=http%3A%2F%2F127.0.0.1%3A9000%2Fgemma3&repo=google%2Fgemma-3-1b");
        assert_eq!((encoded.base.as_str(), encoded.repo.as_str()), ("http://127.0.0.1:9000/gemma3", "google/gemma-3-1b"));
        assert_eq!(LmLink::parse("#lm?repo=a%2").repo, "a%2");
        assert_eq!(LmLink::parse("#lm?repo=%ff%fe").repo, "%ff%fe");
    }

    fn model() -> DecoderConfig {
        crate::model::families::gpt2::config(4096, 256, 256, 4, 4, true)
    }

    fn form() -> TrainForm {
        TrainForm {
            hook: "blocks.2.hook_resid_pre".into(),
            arch: "topk".into(),
            k: "4".into(),
            dict: "64".into(),
            tokens: "2048".into(),
            batch: "256".into(),
            lr: "0.001".into(),
        }
    }

    #[test]
    fn the_form_plans_a_run_through_the_policy() {
        let plan = form().plan(&model()).unwrap();
        assert_eq!((plan.train.steps, plan.eval_every, plan.train.dict, plan.store.context), (8, 2, 64, 128));
    }

    #[test]
    fn bad_fields_are_named_and_counts_are_whole_numbers() {
        let err = |f: TrainForm| f.plan(&model()).unwrap_err();
        assert_eq!(err(TrainForm { k: "2.7".into(), ..form() }), "k: '2.7' is not a whole number");
        assert_eq!(err(TrainForm { batch: "-5".into(), ..form() }), "batch: '-5' is not a whole number");
        assert_eq!(err(TrainForm { dict: "".into(), ..form() }), "dict: give a whole number");
        assert_eq!(err(TrainForm { lr: "fast".into(), ..form() }), "lr: 'fast' is not a number");
        assert!(err(TrainForm { k: "100".into(), ..form() }).contains("k must be between 1 and dict (64)"));
        assert!(err(TrainForm { dict: "100000".into(), ..form() }).contains("at most 65,536 latents"));
        assert!(err(TrainForm { hook: "blocks.9.hook_resid_pre".into(), ..form() }).starts_with("hook: "));
    }
}
