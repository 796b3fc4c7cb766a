//! Finding a model: a local folder or a Hugging Face model id (downloaded and cached).
//!
//! `--model` is a folder when such a folder exists or the argument looks like a path
//! (`./m`, `/data/m`, `~/m`, `m/`); otherwise it is a model id such as `Qwen/Qwen3.5-2B`
//! or `mlx-community/Qwen3.5-2B-4bit`. A model id is looked up in the Hugging Face cache
//! (`$HF_HOME/hub`, else `~/.cache/huggingface/hub`) first; what is missing is downloaded
//! with a progress bar. With `HF_HUB_OFFLINE=1` only the cache is used; `HF_ENDPOINT`
//! changes the hub's address and `HF_TOKEN` (or the token file of `huggingface-cli login`)
//! authenticates for gated models.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError};
use hf_hub::{Cache, Repo, RepoType};

/// Errors of finding or downloading a model.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A file of the model that exists but is not a regular file (a folder, a FIFO).
    #[error("{path} is {kind}, not a regular file")]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it is instead ("a directory", "a FIFO (named pipe)", …).
        kind: &'static str,
    },
    /// The path exists but is not a folder.
    #[error("{0} is not a folder")]
    NotAFolder(PathBuf),
    /// A path-like argument that does not exist.
    #[error("no such folder: {0}")]
    NoSuchFolder(PathBuf),
    /// A folder without the files a model needs.
    #[error("{dir} is not a model folder: it has no {file}")]
    MissingFile {
        /// The folder.
        dir: PathBuf,
        /// The missing file.
        file: &'static str,
    },
    /// Neither a folder nor a valid model id.
    #[error("'{0}' is neither a model folder nor a Hugging Face model id (like Qwen/Qwen3.5-2B)")]
    InvalidId(String),
    /// The hub could not be reached.
    #[error("cannot reach the Hugging Face hub to fetch {model} ({reason}); pass a local folder with --model")]
    Offline {
        /// The model id.
        model: String,
        /// The underlying error.
        reason: String,
    },
    /// The cache lacks files and downloads are disabled.
    #[error("{model} is not fully in the Hugging Face cache ({file} missing) and HF_HUB_OFFLINE is set; pass a local folder with --model")]
    NotCached {
        /// The model id.
        model: String,
        /// The first missing file.
        file: String,
    },
    /// The hub answered with an error status.
    #[error("huggingface.co refused {model}/{file}: HTTP {status} (wrong model id, or a gated model that needs HF_TOKEN)")]
    Http {
        /// The model id.
        model: String,
        /// The file asked for.
        file: String,
        /// The HTTP status.
        status: u16,
    },
    /// Any other download failure.
    #[error("downloading {model}/{file} failed: {reason}")]
    Download {
        /// The model id.
        model: String,
        /// The file.
        file: String,
        /// What went wrong.
        reason: String,
    },
    /// A model file that is not what it should be (e.g. a broken safetensors index).
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What `--model` resolved to: a folder that holds the model's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDir {
    /// The folder (for a model id: its snapshot folder in the Hugging Face cache).
    pub dir: PathBuf,
    /// The model id, when the model came from the hub.
    pub repo_id: Option<String>,
}

/// Options of [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// Show download progress bars.
    pub progress: bool,
    /// Git revision (branch, tag or commit) of a hub model.
    pub revision: String,
    /// Use the cache only, never the network (also set by `HF_HUB_OFFLINE=1`).
    pub offline: bool,
}

impl Default for HubOptions {
    fn default() -> Self {
        HubOptions {
            progress: true,
            revision: "main".into(),
            offline: std::env::var("HF_HUB_OFFLINE")
                .is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "TRUE" | "yes" | "ON" | "on")),
        }
    }
}

/// Files every model folder must have.
const REQUIRED: [&str; 2] = ["config.json", "tokenizer.json"];
/// Files fetched when the hub has them.
const OPTIONAL: [&str; 3] = [
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
];
const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";

/// Resolves `--model`: a local folder (checked for `config.json`) or a hub model id
/// (downloaded into the cache as needed).
pub fn resolve(model: &str, options: &HubOptions) -> Result<ModelDir, HubError> {
    let path = expand_home(model);
    if path.exists() || looks_like_path(model) {
        return local_dir(&path).map(|dir| ModelDir { dir, repo_id: None });
    }
    if !is_repo_id(model) {
        return Err(HubError::InvalidId(model.to_string()));
    }
    let dir = fetch(model, options)?;
    Ok(ModelDir {
        dir,
        repo_id: Some(model.to_string()),
    })
}

/// Checks a local model folder: it must exist, be a folder and hold `config.json`.
pub fn local_dir(path: &Path) -> Result<PathBuf, HubError> {
    if !path.exists() {
        return Err(HubError::NoSuchFolder(path.to_path_buf()));
    }
    if !path.is_dir() {
        return Err(HubError::NotAFolder(path.to_path_buf()));
    }
    let config = path.join("config.json");
    if let Some(kind) = crate::load::not_a_regular_file(&config) {
        return Err(HubError::NotAFile { path: config, kind });
    }
    if !config.is_file() {
        return Err(HubError::MissingFile {
            dir: path.to_path_buf(),
            file: "config.json",
        });
    }
    Ok(path.to_path_buf())
}

/// The weight files of a model folder: the shards named by `model.safetensors.index.json`,
/// else `model.safetensors`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, HubError> {
    let index = dir.join(INDEX);
    if index.is_file() {
        let names = shard_names(&index)?;
        return Ok(names.into_iter().map(|n| dir.join(n)).collect());
    }
    let single = dir.join(SINGLE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(HubError::MissingFile {
        dir: dir.to_path_buf(),
        file: "model.safetensors or model.safetensors.index.json",
    })
}

/// The distinct shard file names of a safetensors index, in first-seen order.
fn shard_names(index: &Path) -> Result<Vec<String>, HubError> {
    let bad = |message: String| HubError::BadFile {
        path: index.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(index).map_err(|e| bad(e.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no weight_map object".into()))?;
    let mut names: Vec<String> = Vec::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("weight_map[{tensor}] is not a file name")))?;
        if file.contains("..") || file.starts_with('/') {
            return Err(bad(format!("shard name {file} leaves the model folder")));
        }
        if !names.iter().any(|n| n == file) {
            names.push(file.to_string());
        }
    }
    if names.is_empty() {
        return Err(bad("weight_map is empty".into()));
    }
    Ok(names)
}

fn expand_home(model: &str) -> PathBuf {
    match model.strip_prefix("~/") {
        Some(rest) => match std::env::var_os("HOME") {
            Some(home) => Path::new(&home).join(rest),
            None => PathBuf::from(model),
        },
        None => PathBuf::from(model),
    }
}

fn looks_like_path(model: &str) -> bool {
    model.starts_with('.')
        || model.starts_with('/')
        || model.starts_with('~')
        || model.ends_with('/')
        || model.contains('\\')
        || model.matches('/').count() > 1
}

/// `owner/name` (or a bare `name`) made of letters, digits, `-`, `_` and `.`.
pub fn is_repo_id(model: &str) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 96
            && !p.starts_with(['-', '.'])
            && !p.contains("..")
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match model.split_once('/') {
        Some((owner, name)) => part_ok(owner) && part_ok(name),
        None => part_ok(model),
    }
}

/// Downloads what the cache lacks and returns the snapshot folder.
fn fetch(model: &str, options: &HubOptions) -> Result<PathBuf, HubError> {
    let repo = Repo::with_revision(model.to_string(), RepoType::Model, options.revision.clone());
    let cache = Cache::from_env();
    let cached = cache.repo(repo.clone());

    // Everything already cached: no network at all.
    if let Some(dir) = complete_in_cache(&cached) {
        return Ok(dir);
    }
    if options.offline {
        let missing = REQUIRED
            .iter()
            .find(|f| cached.get(f).is_none())
            .map_or(SINGLE, |f| *f);
        return Err(HubError::NotCached {
            model: model.to_string(),
            file: missing.to_string(),
        });
    }

    let mut builder = ApiBuilder::from_env().with_progress(options.progress);
    if let Some(token) = std::env::var("HF_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        builder = builder.with_token(Some(token.trim().to_string()));
    }
    let api = builder.build().map_err(|e| hub_error(model, "", e))?;
    let remote = api.repo(repo);
    let info = remote.info().map_err(|e| hub_error(model, "", e))?;
    let listed = |name: &str| info.siblings.iter().any(|s| s.rfilename == name);

    let mut config = PathBuf::new();
    for file in REQUIRED {
        let path = remote.get(file).map_err(|e| hub_error(model, file, e))?;
        if file == "config.json" {
            config = path;
        }
    }
    for file in OPTIONAL.iter().filter(|f| listed(f)) {
        remote.get(file).map_err(|e| hub_error(model, file, e))?;
    }
    if listed(INDEX) {
        let index = remote.get(INDEX).map_err(|e| hub_error(model, INDEX, e))?;
        for shard in shard_names(&index)? {
            remote
                .get(&shard)
                .map_err(|e| hub_error(model, &shard, e))?;
        }
    } else if listed(SINGLE) {
        remote
            .get(SINGLE)
            .map_err(|e| hub_error(model, SINGLE, e))?;
    } else {
        return Err(HubError::Download {
            model: model.to_string(),
            file: SINGLE.into(),
            reason: "the repository has no model.safetensors nor model.safetensors.index.json"
                .into(),
        });
    }
    Ok(config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".")))
}

/// The snapshot folder if config, tokenizer and all weights are cached.
fn complete_in_cache(cached: &hf_hub::CacheRepo) -> Option<PathBuf> {
    let config = cached.get("config.json")?;
    cached.get("tokenizer.json")?;
    let dir = config.parent()?.to_path_buf();
    match cached.get(INDEX) {
        Some(index) => {
            let shards = shard_names(&index).ok()?;
            shards
                .iter()
                .all(|s| cached.get(s).is_some())
                .then_some(dir)
        }
        None => cached.get(SINGLE).map(|_| dir),
    }
}

fn hub_error(model: &str, file: &str, err: ApiError) -> HubError {
    let model = model.to_string();
    let file = file.to_string();
    match err {
        ApiError::RequestError(e) => match *e {
            ureq::Error::Status(status, _) => HubError::Http {
                model,
                file: if file.is_empty() {
                    "(info)".into()
                } else {
                    file
                },
                status,
            },
            ureq::Error::Transport(t) => HubError::Offline {
                model,
                reason: t.to_string(),
            },
        },
        ApiError::TooManyRetries(inner) => hub_error(&model, &file, *inner),
        other => HubError::Download {
            model,
            file,
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_and_paths() {
        assert!(is_repo_id("Qwen/Qwen3.5-2B"));
        assert!(is_repo_id("mlx-community/Qwen3.5-2B-4bit"));
        assert!(is_repo_id("gpt2"));
        assert!(!is_repo_id("a/b/c"));
        assert!(!is_repo_id("Qwen/"));
        assert!(!is_repo_id("/abs"));
        assert!(!is_repo_id("has space/x"));
        assert!(!is_repo_id("../x"));
        assert!(looks_like_path("./model"));
        assert!(looks_like_path("/data/model"));
        assert!(looks_like_path("~/model"));
        assert!(looks_like_path("a/b/c"));
        assert!(!looks_like_path("Qwen/Qwen3.5-2B"));
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mlx-lm-hub-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn weight_files_single_and_sharded() {
        let dir = temp("weights");
        assert!(matches!(
            weight_files(&dir),
            Err(HubError::MissingFile { .. })
        ));
        std::fs::write(dir.join(SINGLE), "").unwrap();
        assert_eq!(weight_files(&dir).unwrap(), vec![dir.join(SINGLE)]);
        // The index wins over a single file; shards are listed once, in first-seen order.
        std::fs::write(
            dir.join(INDEX),
            r#"{"weight_map": {"x": "b.safetensors", "y": "a.safetensors", "z": "b.safetensors"}}"#,
        )
        .unwrap();
        assert_eq!(
            weight_files(&dir).unwrap(),
            vec![dir.join("b.safetensors"), dir.join("a.safetensors")]
        );
    }

    #[test]
    fn broken_indexes_are_errors() {
        let dir = temp("index");
        for bad in [
            "{not json",
            r#"{"metadata": {}}"#,
            r#"{"weight_map": {}}"#,
            r#"{"weight_map": {"x": 3}}"#,
            r#"{"weight_map": {"x": "../../etc/passwd"}}"#,
        ] {
            std::fs::write(dir.join(INDEX), bad).unwrap();
            let err = weight_files(&dir).unwrap_err();
            assert!(matches!(err, HubError::BadFile { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn local_folders_need_config_json() {
        let dir = temp("local");
        assert!(matches!(
            local_dir(&dir),
            Err(HubError::MissingFile {
                file: "config.json",
                ..
            })
        ));
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        assert_eq!(local_dir(&dir).unwrap(), dir);
        assert!(matches!(
            local_dir(&dir.join("config.json")),
            Err(HubError::NotAFolder(_))
        ));
        assert!(matches!(
            local_dir(&dir.join("nope")),
            Err(HubError::NoSuchFolder(_))
        ));
        let resolved = resolve(dir.to_str().unwrap(), &HubOptions::default()).unwrap();
        assert_eq!(
            resolved,
            ModelDir {
                dir: dir.clone(),
                repo_id: None
            }
        );
    }
}
