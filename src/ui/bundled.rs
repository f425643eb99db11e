//! What the page ships with: the bundled model, its SAEs, a text to open on and the held-out
//! sample, shared by the language-model view and its training panel.

/// The model bundled with the page (www/models/, trained by tools/train_bundled_model.py) and its
/// SAEs (tools/train_bundled_saes.sh): what the tab opens on when its link names no repository, so
/// there is something real to explore with no network.
pub(super) const BUNDLED_MODEL: &str = "models/kjv-gpt2";
pub(super) const BUNDLED_SAES: [&str; 4] = ["topk-1024", "batchtopk-1024", "topk-4096", "batchtopk-4096"];
pub(super) const BUNDLED_TEXT: &str = "And God said, Let there be light: and there was light.";
/// The bundled model's held-out text: the dashboards' sample and the training panel's default corpus.
pub(super) const BUNDLED_SAMPLE: &str = "models/kjv-gpt2/heldout.txt";
