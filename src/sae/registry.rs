//! SAELens's registry of published SAEs (`sae_lens/pretrained_saes.yaml`), as the compact index
//! `tools/make_registry.py` makes of it (`www/registry.json`): per release its model, Hub
//! repository, conversion function and config overrides; per SAE its id, path in the repository,
//! L0, variance explained, Neuronpedia id and activation-norm scaling factor. `release` + `sae_id`
//! resolve to a repository and a folder exactly as SAELens's `get_repo_id_and_folder_name` does.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::formats::FormatError;
use crate::model::families::FAMILIES;
use crate::sae::convert::Conversion;

/// The index as `tools/make_registry.py` writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Registry {
    /// Which SAELens made it ("sae-lens 6.54.12 pretrained_saes.yaml").
    pub source: String,
    pub releases: Vec<Release>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Release {
    pub release: String,
    /// The model name as SAELens records it (a TransformerLens name or a Hub id).
    pub model: String,
    /// The Hugging Face repository TransformerLens loads for `model`.
    pub hf_model: String,
    /// That model's `config.json` `model_type`, when the index knows it.
    pub model_type: Option<String>,
    /// The Hub repository the SAEs are in.
    pub repo: String,
    /// SAELens's conversion function (`sae_lens` for SAELens's own folders).
    pub conversion: String,
    /// `config_overrides`: merged into the converted cfg (SAELens `get_config_overrides`).
    #[serde(default)]
    pub overrides: Map<String, Value>,
    #[serde(default)]
    pub links: Map<String, Value>,
    pub saes: Vec<Entry>,
}

/// One SAE of a release: `[id, path, l0, variance_explained, neuronpedia, norm_scaling_factor]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "(String, Option<String>, Option<f64>, Option<f64>, Option<String>, Option<f64>)")]
pub struct Entry {
    pub id: String,
    /// Its folder (or file) in the repository.
    pub path: String,
    pub l0: Option<f64>,
    pub variance_explained: Option<f64>,
    pub neuronpedia: Option<String>,
    /// Folded into the weights when the SAE's `normalize_activations` is `expected_average_only_in`
    /// (SAELens `SAE.from_pretrained` → `fold_activation_norm_scaling_factor`).
    pub norm_scaling_factor: Option<f64>,
}

type Row = (String, Option<String>, Option<f64>, Option<f64>, Option<String>, Option<f64>);

impl From<Row> for Entry {
    fn from((id, path, l0, variance_explained, neuronpedia, norm_scaling_factor): Row) -> Entry {
        let path = path.unwrap_or_else(|| id.clone());
        Entry { id, path, l0, variance_explained, neuronpedia, norm_scaling_factor }
    }
}

/// Why saelab cannot open a release's SAEs, or `None` when it can.
#[derive(Debug, Clone, PartialEq)]
pub enum Unsupported {
    /// The model's family has no description here.
    Model { model: String, model_type: Option<String> },
    /// The conversion function is not one saelab implements.
    Conversion(String),
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsupported::Model { model, model_type: Some(t) } => write!(
                f,
                "its model {model} is a '{t}' model, which saelab does not run (it runs {})",
                FAMILIES.iter().map(|f| f.model_type).collect::<Vec<_>>().join(", ")
            ),
            Unsupported::Model { model, model_type: None } => write!(f, "its model {model} is of no family saelab knows"),
            Unsupported::Conversion(c) => write!(f, "its files are in the '{c}' format, which saelab does not read yet"),
        }
    }
}

impl Release {
    /// Whether saelab can open this release's SAEs: it runs the model and reads the format.
    pub fn unsupported(&self) -> Option<Unsupported> {
        if Conversion::from_name(&self.conversion).is_none() {
            return Some(Unsupported::Conversion(self.conversion.clone()));
        }
        match &self.model_type {
            Some(t) if FAMILIES.iter().any(|f| f.model_type == t) => None,
            other => Some(Unsupported::Model { model: self.hf_model.clone(), model_type: other.clone() }),
        }
    }

    /// Why saelab cannot open `entry` of this release (its model, its format, or a kind of SAE
    /// the format holds that saelab does not run yet), or `None` when it can.
    pub fn why_not(&self, entry: &Entry) -> Option<String> {
        if let Some(why) = self.unsupported() {
            return Some(why.to_string());
        }
        Conversion::from_name(&self.conversion).and_then(|c| c.unsupported_path(&entry.path)).map(str::to_string)
    }

    pub fn entry(&self, sae_id: &str) -> Option<&Entry> {
        self.saes.iter().find(|e| e.id == sae_id)
    }

    /// The Neuronpedia page of one feature, when the SAE has one.
    pub fn neuronpedia_url(entry: &Entry, feature: usize) -> Option<String> {
        entry.neuronpedia.as_deref().map(|id| neuronpedia_url(id, feature))
    }
}

/// A feature's page on Neuronpedia: `https://www.neuronpedia.org/{neuronpedia_id}/{feature}`.
pub fn neuronpedia_url(neuronpedia_id: &str, feature: usize) -> String {
    format!("https://www.neuronpedia.org/{neuronpedia_id}/{feature}")
}

const FILE: &str = "registry.json";

impl Registry {
    pub fn parse(bytes: &[u8]) -> Result<Registry, FormatError> {
        let registry: Registry = serde_json::from_slice(bytes)
            .map_err(|e| FormatError::Config { file: FILE.into(), msg: format!("not a saelab registry index ({e})") })?;
        Ok(registry)
    }

    /// The index this build was made with (native builds embed it; the page fetches
    /// `registry.json` beside itself instead of carrying 1.4 MB in its wasm).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn bundled() -> Registry {
        Registry::parse(include_bytes!("../../www/registry.json")).expect("www/registry.json is made by tools/make_registry.py")
    }

    pub fn release(&self, name: &str) -> Option<&Release> {
        self.releases.iter().find(|r| r.release == name)
    }

    /// `release` and `sae_id` → their entries, or a one-line message with the nearest names.
    pub fn find(&self, release: &str, sae_id: &str) -> Result<(&Release, &Entry), String> {
        let Some(r) = self.release(release) else {
            let near = nearest(release, self.releases.iter().map(|r| r.release.as_str()));
            return Err(format!("no release '{release}' in SAELens's registry{}", did_you_mean(&near)));
        };
        let Some(e) = r.entry(sae_id) else {
            let near = nearest(sae_id, r.saes.iter().map(|e| e.id.as_str()));
            return Err(format!("release '{release}' has no SAE '{sae_id}' ({} SAEs){}", r.saes.len(), did_you_mean(&near)));
        };
        Ok((r, e))
    }

    /// The SAEs saelab opens that match `query`, grouped by model (models by name, then releases
    /// by name, each release's SAEs in the registry's order).
    pub fn search(&self, query: &Query) -> Vec<(&Release, &Entry)> {
        let mut releases: Vec<&Release> = self.releases.iter().filter(|r| r.unsupported().is_none()).collect();
        releases.sort_by(|a, b| (&a.hf_model, &a.release).cmp(&(&b.hf_model, &b.release)));
        releases
            .into_iter()
            .flat_map(|r| r.saes.iter().filter(move |e| r.why_not(e).is_none() && query.matches(r, e)).map(move |e| (r, e)))
            .collect()
    }

    /// The SAEs this build cannot open, counted by cause, most first: a model type saelab does not
    /// run (with up to three of its models), a format it does not read, or a kind of SAE a format
    /// holds that it does not run yet (Gemma Scope 2's transcoders).
    pub fn why_not_by_cause(&self) -> Vec<(usize, String)> {
        let mut causes: Vec<(String, usize, Vec<String>)> = Vec::new();
        for release in &self.releases {
            for entry in &release.saes {
                let cause = match release.unsupported() {
                    Some(Unsupported::Model { model_type: Some(t), .. }) => {
                        format!("their model is a '{t}' model, which saelab does not run")
                    }
                    Some(Unsupported::Model { model_type: None, .. }) => "their model is of no family saelab knows".to_string(),
                    Some(Unsupported::Conversion(c)) => format!("their files are in the '{c}' format, which saelab does not read yet"),
                    None => match release.why_not(entry) {
                        Some(why) => why,
                        None => continue,
                    },
                };
                let at = causes.iter().position(|(c, ..)| *c == cause).unwrap_or_else(|| {
                    causes.push((cause, 0, Vec::new()));
                    causes.len() - 1
                });
                let (_, count, models) = &mut causes[at];
                *count += 1;
                if !models.contains(&release.hf_model) {
                    models.push(release.hf_model.clone());
                }
            }
        }
        causes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        causes
            .into_iter()
            .map(|(cause, count, models)| {
                let more = if models.len() > 3 { format!(", and {} more", models.len() - 3) } else { String::new() };
                (count, format!("{cause} ({}{more})", models.iter().take(3).cloned().collect::<Vec<_>>().join(", ")))
            })
            .collect()
    }

    /// `(SAEs saelab opens, SAEs listed)`.
    pub fn openable(&self) -> (usize, usize) {
        let total = self.releases.iter().map(|r| r.saes.len()).sum();
        let open = self.releases.iter().map(|r| r.saes.iter().filter(|e| r.why_not(e).is_none()).count()).sum();
        (open, total)
    }
}

/// What the SAE picker's search box asks for: words that must all appear in an SAE's release,
/// model, id or path (case-insensitive), and bounds on its L0 (`l0<50`, `l0>10`, `l0<=`, `l0>=`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    words: Vec<String>,
    l0_min: Option<f64>,
    l0_max: Option<f64>,
}

impl Query {
    /// Reads a search box; a malformed L0 bound is an error naming it.
    pub fn parse(text: &str) -> Result<Query, String> {
        let mut q = Query::default();
        for word in text.split_whitespace().map(str::to_lowercase) {
            let Some(bound) = word.strip_prefix("l0") else {
                q.words.push(word);
                continue;
            };
            let (max, value) = match bound.as_bytes().first() {
                Some(b'<') => (true, bound[1..].trim_start_matches('=')),
                Some(b'>') => (false, bound[1..].trim_start_matches('=')),
                // "l0" alone or "l0_small" (Gemma Scope 2's ids) is a word.
                _ => {
                    q.words.push(word);
                    continue;
                }
            };
            let n: f64 = value.parse().map_err(|_| format!("'{word}': an L0 bound is l0<N or l0>N with N a number"))?;
            if max {
                q.l0_max = Some(n);
            } else {
                q.l0_min = Some(n);
            }
        }
        Ok(q)
    }

    fn matches(&self, release: &Release, entry: &Entry) -> bool {
        let in_bounds = match entry.l0 {
            Some(l0) => self.l0_min.is_none_or(|m| l0 >= m) && self.l0_max.is_none_or(|m| l0 <= m),
            None => self.l0_min.is_none() && self.l0_max.is_none(),
        };
        in_bounds
            && self.words.iter().all(|w| {
                [&release.release, &release.model, &release.hf_model, &entry.id, &entry.path].iter().any(|f| f.to_lowercase().contains(w))
            })
    }
}

fn did_you_mean(near: &[&str]) -> String {
    if near.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", near.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "))
    }
}

/// Up to three names closest to `query`: those containing it first, then by edit distance (at most
/// a third of the query's length, and at least 3).
pub fn nearest<'a>(query: &str, names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let q = query.to_lowercase();
    let limit = (q.chars().count() / 3).max(3);
    let mut scored: Vec<(usize, &str)> = names
        .filter_map(|n| {
            let lower = n.to_lowercase();
            let d = if !q.is_empty() && lower.contains(&q) { 0 } else { edit_distance(&q, &lower) };
            (d <= limit).then_some((d, n))
        })
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, n)| n).collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_box_reads_words_and_l0_bounds() {
        let q = Query::parse("Gemma  res l0<=50 l0>10 l0_small").unwrap();
        assert_eq!((q.words.clone(), q.l0_min, q.l0_max), (vec!["gemma".into(), "res".into(), "l0_small".into()], Some(10.0), Some(50.0)));
        assert!(Query::parse("l0<lots").unwrap_err().contains("'l0<lots'"));
        assert_eq!(Query::parse("").unwrap(), Query::default());
    }

    #[test]
    fn search_lists_what_opens_grouped_by_model() {
        let registry = Registry::bundled();
        let all = registry.search(&Query::default());
        assert_eq!(all.len(), registry.openable().0);
        // Grouped: each model's SAEs are contiguous.
        let mut seen = Vec::new();
        for (r, _) in &all {
            if seen.last() != Some(&r.hf_model) {
                assert!(!seen.contains(&r.hf_model), "{} appears in two groups", r.hf_model);
                seen.push(r.hf_model.clone());
            }
        }
        let jb = registry.search(&Query::parse("gpt2-small-res-jb blocks.8.hook_resid_pre").unwrap());
        assert!(jb.iter().any(|(r, e)| r.release == "gpt2-small-res-jb" && e.id == "blocks.8.hook_resid_pre"), "{jb:?}");
        let low = registry.search(&Query::parse("gemma-scope-2b-pt-res layer_12 l0<30").unwrap());
        assert!(!low.is_empty() && low.iter().all(|(_, e)| e.l0.is_some_and(|l0| l0 <= 30.0) && e.id.contains("layer_12")));
        // Nothing from a release saelab cannot open.
        assert!(all.iter().all(|(r, e)| r.why_not(e).is_none()));
    }

    #[test]
    fn what_cannot_be_opened_is_counted_by_cause() {
        let registry = Registry::bundled();
        let causes = registry.why_not_by_cause();
        let (open, total) = registry.openable();
        assert_eq!(causes.iter().map(|(n, _)| n).sum::<usize>(), total - open);
        assert!(causes.windows(2).all(|w| w[0].0 >= w[1].0), "most first");
        // SAELens 6.54.12's yaml: Qwen 3.5 (hybrid linear attention) holds the most of the rest.
        assert!(causes[0].1.starts_with("their model is a 'qwen3_5' model") && causes[0].1.contains("Qwen/Qwen3.5-"), "{causes:?}");
        assert!(causes.iter().any(|(_, c)| c.contains("'mntss_clt_layer_transcoder' format")), "{causes:?}");
    }

    #[test]
    fn edit_distance_and_nearest_names() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        let names = ["gpt2-small-res-jb", "gpt2-small-res-jb-feature-splitting", "gemma-scope-2b-pt-res"];
        assert_eq!(nearest("gpt2-small-res-bj", names.iter().copied()), ["gpt2-small-res-jb"]);
        assert_eq!(nearest("res-jb", names.iter().copied()), ["gpt2-small-res-jb", "gpt2-small-res-jb-feature-splitting"]);
        assert!(nearest("llama", names.iter().copied()).is_empty());
    }
}
