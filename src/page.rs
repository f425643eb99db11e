//! The page's pure logic — link state and form parsing — compiled for every target, so `cargo
//! test` runs it natively; `ui` (wasm only) renders the page and calls these.

use crate::model::decoder::DecoderConfig;
use crate::train::policy::{parse_count, parse_positive, TrainPlan, TrainSettings};

/// What a `#lm?…` link asks the language-model tab to open: a model repository on a Hub, or an SAE
/// of SAELens's registry by release and id (its model comes with it), and the text and feature to
/// show. `#lm?base=…&release=gpt2-small-res-jb&sae=blocks.8.hook_resid_pre&text=…&feature=17`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LmLink {
    /// The Hub (or a stand-in in its layout) models and SAEs are downloaded from.
    pub base: String,
    /// The model repository.
    pub repo: String,
    /// Whether the link named a repository (else the tab opens on the bundled model).
    pub repo_named: bool,
    /// An SAE of the registry: release and SAE id.
    pub sae: Option<(String, String)>,
    pub text: Option<String>,
    pub feature: Option<usize>,
}

impl LmLink {
    pub const DEFAULT_BASE: &'static str = "https://huggingface.co";
    pub const DEFAULT_REPO: &'static str = "gpt2";

    /// Reads a location hash (anything but `#lm?…` gives the defaults). Unknown keys, pairs
    /// without `=`, a feature that is not a number and a release without its SAE id are ignored;
    /// a key given twice keeps its last value.
    pub fn parse(hash: &str) -> LmLink {
        let query = hash.strip_prefix("#lm").unwrap_or("").trim_start_matches('?');
        let mut link = LmLink {
            base: Self::DEFAULT_BASE.into(),
            repo: Self::DEFAULT_REPO.into(),
            repo_named: false,
            sae: None,
            text: None,
            feature: None,
        };
        let (mut release, mut sae_id) = (None, None);
        for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
            let v = percent_decoded(v);
            match k {
                "base" => link.base = v,
                "repo" => {
                    link.repo = v;
                    link.repo_named = true;
                }
                "release" => release = Some(v),
                "sae" => sae_id = Some(v),
                "text" => link.text = Some(v),
                "feature" => link.feature = v.parse().ok(),
                _ => {}
            }
        }
        link.sae = release.zip(sae_id);
        link
    }

    /// The hash that reopens this view (the defaults left out).
    pub fn to_hash(&self) -> String {
        let mut pairs = Vec::new();
        if self.base != Self::DEFAULT_BASE {
            pairs.push(("base", self.base.clone()));
        }
        if self.repo_named {
            pairs.push(("repo", self.repo.clone()));
        }
        if let Some((release, sae_id)) = &self.sae {
            pairs.push(("release", release.clone()));
            pairs.push(("sae", sae_id.clone()));
        }
        if let Some(text) = &self.text {
            pairs.push(("text", text.clone()));
        }
        if let Some(feature) = self.feature {
            pairs.push(("feature", feature.to_string()));
        }
        let query: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={}", percent_encoded(&v))).collect();
        if query.is_empty() {
            "#lm".into()
        } else {
            format!("#lm?{}", query.join("&"))
        }
    }
}

/// `v` with every byte but `encodeURIComponent`'s unreserved ones (`A-Z a-z 0-9 - _ . ! ~ * ' ( )`)
/// written as `%XX`.
fn percent_encoded(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

    #[test]
    fn links_hold_an_sae_by_name_text_and_feature_and_round_trip() {
        let link = LmLink {
            base: "http://127.0.0.1:9000/hub".into(),
            repo: LmLink::DEFAULT_REPO.into(),
            repo_named: false,
            sae: Some(("gemma-scope-2b-pt-res-canonical".into(), "layer_12/width_16k/canonical".into())),
            text: Some("Paris & Berlin = 50% of \"capitals\" — déjà vu #1?".into()),
            feature: Some(1234),
        };
        let hash = link.to_hash();
        assert!(
            hash.starts_with("#lm?base=http%3A%2F%2F127.0.0.1%3A9000%2Fhub&release=gemma-scope-2b-pt-res-canonical&sae=layer_12%2F"),
            "{hash}"
        );
        // The text's own `&`, `=`, `#` and spaces are escaped: five pairs, four separators.
        assert_eq!(hash.matches('&').count(), 4, "{hash}");
        assert!(!hash[1..].contains(['#', ' ']), "{hash}");
        assert_eq!(LmLink::parse(&hash), link);
        assert_eq!(LmLink::parse("#lm").to_hash(), "#lm");
        // A release without its SAE id, or a feature that is not a number, is ignored.
        let partial = LmLink::parse("#lm?release=gpt2-small-res-jb&feature=x");
        assert_eq!((partial.sae, partial.feature), (None, None));
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
