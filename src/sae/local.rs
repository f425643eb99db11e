//! SAEs from the local disk (native only): a folder in any format [`Conversion::detect`] knows, or
//! `RELEASE/SAE_ID` resolved through the registry to a Hugging Face cache, which is where a Python
//! user's `SAE.from_pretrained` already put the files: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`, laid out as `models--ORG--NAME/snapshots/REVISION/PATH`.
//! A folder inside such a cache is opened as its repository's: the repository name gives what
//! the loaders read from it, and its registry entry (when there is one) the overrides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::convert::{convert, Conversion, SaeSource};
use super::registry::{Entry, Registry, Release};
use super::Sae;
use crate::formats::FormatError;

/// The Hugging Face hub cache folder this process would use.
pub fn hub_cache() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("HF_HUB_CACHE").or_else(|| var("HF_HOME").map(|h| h.join("hub"))).or_else(|| var("HOME").map(|h| h.join(".cache/huggingface/hub")))
}

/// `models--ORG--NAME` for a repository id.
fn repo_folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// Where `dir` is inside a hub cache: `(repository, snapshot folder, path in the repository)`.
fn in_cache(dir: &Path) -> Option<(String, PathBuf, String)> {
    let parts: Vec<_> = dir.components().collect();
    let at = parts.iter().rposition(|c| c.as_os_str().to_str().is_some_and(|s| s.starts_with("models--")))?;
    let name = parts[at].as_os_str().to_str()?.strip_prefix("models--")?;
    if parts.get(at + 1)?.as_os_str() != "snapshots" {
        return None;
    }
    let root: PathBuf = parts[..at + 3].iter().collect();
    let rest: Vec<&str> = parts[at + 3..].iter().filter_map(|c| c.as_os_str().to_str()).collect();
    Some((name.replacen("--", "/", 1), root, rest.join("/")))
}

/// The snapshot of `repo` in `cache` that holds `wanted_file`: the one `refs/main` names first,
/// then any other.
fn snapshot_with(cache: &Path, repo: &str, wanted_file: &str) -> Option<PathBuf> {
    let repo_dir = cache.join(repo_folder(repo));
    let main = std::fs::read_to_string(repo_dir.join("refs/main")).ok().map(|s| s.trim().to_string());
    let mut revisions: Vec<String> =
        std::fs::read_dir(repo_dir.join("snapshots")).ok()?.filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok())).collect();
    revisions.sort_by_key(|r| Some(r) != main.as_ref());
    revisions.into_iter().map(|r| repo_dir.join("snapshots").join(r)).find(|s| s.join(wanted_file).is_file())
}

/// Reads the files `conversion` wants for `folder` under `root`; a missing required one is an
/// error naming where it was looked for and `hint`.
fn read_wanted(conversion: Conversion, root: &Path, folder: &str, hint: &str) -> Result<BTreeMap<String, Vec<u8>>, FormatError> {
    let mut files = BTreeMap::new();
    for wanted in conversion.wanted(folder) {
        let path = root.join(&wanted.path);
        match std::fs::read(&path) {
            Ok(bytes) => {
                files.insert(wanted.path, bytes);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !wanted.required => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FormatError::Io { file: path.display().to_string(), msg: format!("not there{hint}") });
            }
            Err(e) => return Err(FormatError::Io { file: path.display().to_string(), msg: e.to_string() }),
        }
    }
    Ok(files)
}

/// An SAE folder in any known format, or the file of a single-file format (Qwen Scope's
/// `layerN.sae.pt`). Inside a hub cache the repository (and its registry entry, when `registry`
/// lists the folder) is known; elsewhere the folder's path is all there is.
pub fn open_folder(dir: &Path, registry: &Registry) -> Result<Sae, FormatError> {
    let io = |e: std::io::Error| FormatError::Io { file: dir.display().to_string(), msg: e.to_string() };
    if !dir.exists() {
        return Err(FormatError::Io { file: dir.display().to_string(), msg: "not there".into() });
    }
    let dir = dir.canonicalize().map_err(io)?;
    let is_file = dir.is_file();
    let list = if is_file { dir.parent().unwrap_or(Path::new("/")) } else { &dir };
    let names: Vec<String> =
        std::fs::read_dir(list).map_err(io)?.filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok())).collect();
    let (repo, root, folder) = match in_cache(&dir) {
        Some((repo, root, folder)) => (Some(repo), root, folder),
        None => (None, PathBuf::from("/"), dir.to_string_lossy().trim_start_matches('/').to_string()),
    };
    let listed = repo.as_deref().and_then(|repo| {
        registry.releases.iter().filter(|r| r.repo == repo).find_map(|r| r.saes.iter().find(|e| e.path == folder).map(|e| (r, e)))
    });
    let conversion = match listed {
        Some((release, _)) => Conversion::from_name(&release.conversion).ok_or_else(|| FormatError::Config {
            file: dir.display().to_string(),
            msg: format!("its release's format '{}' is not supported yet", release.conversion),
        })?,
        None => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let detected = match dir.file_name().and_then(|n| n.to_str()) {
                Some(name) if is_file => Conversion::detect_file(name, &names),
                _ => Conversion::detect(&names),
            };
            // Gemma Scope's transcoders share its SAEs' params.npz; their repository says which.
            match detected.map_err(|msg| FormatError::Config { file: dir.display().to_string(), msg })? {
                Conversion::Gemma2 if repo.as_deref().is_some_and(|r| r.contains("transcoders")) => Conversion::Gemma2Transcoder,
                other => other,
            }
        }
    };
    if conversion.single_file() != is_file {
        let (want, have) = if is_file { ("a folder", "a file") } else { ("a file", "a folder") };
        return Err(FormatError::Config {
            file: dir.display().to_string(),
            msg: format!("a '{}' SAE is {want}, and this is {have}", conversion.name()),
        });
    }
    let files = read_wanted(conversion, &root, &folder, "")?;
    convert(conversion, &SaeSource { repo: repo.as_deref(), folder: &folder, registry: listed, files: &files })
}

/// `RELEASE/SAE_ID` split at the first `/` after a release the registry lists (SAE ids contain
/// slashes, release names do not).
pub fn split_name<'r>(name: &str, registry: &'r Registry) -> Result<(&'r Release, &'r Entry), String> {
    let (release, sae_id) = name.split_once('/').ok_or_else(|| format!("'{name}' is neither a folder nor RELEASE/SAE_ID"))?;
    registry.find(release, sae_id)
}

/// An SAE by its registry name, from the Hugging Face cache `cache`.
pub fn open_by_name(release: &Release, entry: &Entry, cache: &Path) -> Result<Sae, FormatError> {
    let here = format!("{}/{}", release.release, entry.id);
    if let Some(why) = release.unsupported() {
        return Err(FormatError::Config { file: here, msg: format!("saelab cannot open it: {why}") });
    }
    let conversion = Conversion::from_name(&release.conversion).expect("supported, checked above");
    if let Some(why) = conversion.unsupported_path(&entry.path) {
        return Err(FormatError::Config { file: here, msg: why.into() });
    }
    let wanted = conversion.wanted(&entry.path);
    let first = &wanted.iter().find(|w| w.required).expect("every conversion needs a file").path;
    // A single-file SAE may have companions (NAME_cfg.json beside NAME.pt, configs at the root).
    let include = if conversion.single_file() {
        wanted.iter().map(|w| format!("--include '{}'", w.path)).collect::<Vec<_>>().join(" ")
    } else {
        format!("--include '{}/*'", entry.path)
    };
    let hint = format!(
        " (download it with: huggingface-cli download {} {include}, or SAE.from_pretrained(\"{}\", \"{}\") in SAELens)",
        release.repo, release.release, entry.id
    );
    let snapshot = snapshot_with(cache, &release.repo, first).ok_or_else(|| FormatError::Io {
        file: cache.join(repo_folder(&release.repo)).join("snapshots/*").join(first).display().to_string(),
        msg: format!("not in the Hugging Face cache{hint}"),
    })?;
    let files = read_wanted(conversion, &snapshot, &entry.path, &hint)?;
    convert(conversion, &SaeSource { repo: Some(&release.repo), folder: &entry.path, registry: Some((release, entry)), files: &files })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_repository_of_a_cache_folder() {
        let dir = Path::new("/h/hub/models--google--gemma-scope-2b-pt-res/snapshots/abc123/layer_3/width_16k/average_l0_9");
        let (repo, root, folder) = in_cache(dir).unwrap();
        assert_eq!(repo, "google/gemma-scope-2b-pt-res");
        assert_eq!(root, Path::new("/h/hub/models--google--gemma-scope-2b-pt-res/snapshots/abc123"));
        assert_eq!(folder, "layer_3/width_16k/average_l0_9");
        assert!(in_cache(Path::new("/data/models--x--y/blobs/z")).is_none());
        assert!(in_cache(Path::new("/data/sae")).is_none());
        assert_eq!(repo_folder("fnlp/Llama-Scope-R1-Distill"), "models--fnlp--Llama-Scope-R1-Distill");
    }
}
