//! The local Hugging Face hub cache, read offline the way `huggingface_hub` reads it, never downloaded to.
//!
//! Layout (huggingface_hub's): `<cache>/models--{org}--{name}/refs/<ref>` holds a commit hash,
//! `snapshots/<commit>/` is the model folder (its files are symlinks into `blobs/`). The cache is
//! `$HF_HUB_CACHE`, else `$HUGGINGFACE_HUB_CACHE` (legacy), else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`. An id may carry `@revision`
//! (a ref such as `main`, or a snapshot's commit). The models that predate organisations on the hub
//! (`distilbert-base-uncased`, now `distilbert/distilbert-base-uncased`) may sit in the cache under
//! either name, so both names are tried.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

/// A parsed hub model id: `org/name` or `name`, with an optional revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HubId {
    pub repo: String,
    pub revision: Option<String>,
}

/// One snapshot of a cached model, as `--model <repo>[@<revision>]` resolves it.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// the snapshot's folder name: the commit hash
    pub revision: String,
    pub dir: PathBuf,
    /// something the user should know about how it was picked (no refs/main, one snapshot)
    pub note: Option<String>,
}

/// Models that predate organisations on the hub, and the organisation that now holds them. The hub
/// redirects the old ids, and a cache holds whichever spelling the user's tools asked for.
/// (sentence-transformers' own list of these ids, restricted to the families whose new home is certain.)
const LEGACY_IDS: &[(&str, &str)] = &[
    ("bert-base-uncased", "google-bert"),
    ("bert-base-cased", "google-bert"),
    ("bert-large-uncased", "google-bert"),
    ("bert-large-cased", "google-bert"),
    ("bert-base-multilingual-uncased", "google-bert"),
    ("bert-base-multilingual-cased", "google-bert"),
    ("bert-base-chinese", "google-bert"),
    ("bert-base-german-cased", "google-bert"),
    ("bert-large-uncased-whole-word-masking", "google-bert"),
    ("bert-large-cased-whole-word-masking", "google-bert"),
    ("bert-large-uncased-whole-word-masking-finetuned-squad", "google-bert"),
    ("bert-large-cased-whole-word-masking-finetuned-squad", "google-bert"),
    ("bert-base-cased-finetuned-mrpc", "google-bert"),
    ("distilbert-base-uncased", "distilbert"),
    ("distilbert-base-cased", "distilbert"),
    ("distilbert-base-multilingual-cased", "distilbert"),
    ("distilbert-base-german-cased", "distilbert"),
    ("distilbert-base-uncased-distilled-squad", "distilbert"),
    ("distilbert-base-cased-distilled-squad", "distilbert"),
    ("distilbert-base-uncased-finetuned-sst-2-english", "distilbert"),
    ("distilroberta-base", "distilbert"),
    ("roberta-base", "FacebookAI"),
    ("roberta-large", "FacebookAI"),
    ("xlm-roberta-base", "FacebookAI"),
    ("xlm-roberta-large", "FacebookAI"),
];

/// The organisation sentence-transformers prepends to a bare name that is not a legacy id
/// (`all-mpnet-base-v2` means `sentence-transformers/all-mpnet-base-v2` to `SentenceTransformer(...)`).
const ST_ORG: &str = "sentence-transformers";

fn env_path(key: &str) -> Option<PathBuf> {
    // an empty variable is treated as unset rather than as the working directory
    std::env::var_os(key)
        .filter(|v| !v.is_empty())
        .map(|v| expand_home(Path::new(&v)))
}

fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// The hub cache folder, resolved as huggingface_hub resolves it (it need not exist).
pub(crate) fn cache_dir() -> PathBuf {
    if let Some(p) = env_path("HF_HUB_CACHE").or_else(|| env_path("HUGGINGFACE_HUB_CACHE")) {
        return p;
    }
    let hf_home = env_path("HF_HOME").unwrap_or_else(|| {
        let xdg = env_path("XDG_CACHE_HOME").unwrap_or_else(|| expand_home(Path::new("~/.cache")));
        xdg.join("huggingface")
    });
    hf_home.join("hub")
}

/// `name`, `org/name`, `org/name@rev` as huggingface_hub's `validate_repo_id` accepts them; None for
/// anything else (paths such as `../x` or `/models/x`), which is then not looked up in the cache.
pub(crate) fn parse_id(arg: &str) -> Option<HubId> {
    let (repo, revision) = match arg.split_once('@') {
        Some((r, rev)) => (r, Some(rev.to_string())),
        None => (arg, None),
    };
    let parts: Vec<&str> = repo.split('/').collect();
    let part_ok = |p: &str| {
        let b = p.as_bytes();
        !b.is_empty()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && (b[b.len() - 1].is_ascii_alphanumeric() || b[b.len() - 1] == b'_')
    };
    let valid = parts.len() <= 2
        && parts.iter().all(|p| part_ok(p))
        && !repo.contains("--")
        && !repo.contains("..")
        && repo.len() <= 96;
    valid.then(|| HubId {
        repo: repo.to_string(),
        revision,
    })
}

/// The cache folder name of a repo id: `models--org--name`.
pub(crate) fn folder_name(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// The repo id of a cache folder name, or None for other entries (datasets, spaces, lock files).
pub(crate) fn repo_of_folder(folder: &str) -> Option<String> {
    folder.strip_prefix("models--").map(|r| r.replace("--", "/"))
}

/// Every spelling under which the model `repo` may sit in a cache, the given one first.
pub(crate) fn aliases(repo: &str) -> Vec<String> {
    let mut out = vec![repo.to_string()];
    match repo.split_once('/') {
        None => match LEGACY_IDS.iter().find(|(n, _)| *n == repo) {
            Some((n, org)) => out.push(format!("{org}/{n}")),
            None => out.push(format!("{ST_ORG}/{repo}")),
        },
        Some((org, name)) => {
            if LEGACY_IDS.iter().any(|(n, o)| *n == name && *o == org) {
                out.push(name.to_string());
            }
        }
    }
    out
}

/// A revision must stay inside the repo's folder: refs may contain `/` (`refs/pr/1`), never `..`.
fn check_revision(rev: &str) -> Result<()> {
    let ok = !rev.is_empty()
        && !rev.contains('\\')
        && Path::new(rev).components().all(|c| matches!(c, Component::Normal(_)));
    if !ok {
        bail!("revision `{rev}` is not a ref name or a commit hash");
    }
    Ok(())
}

fn read_ref(path: &Path) -> Result<String> {
    let text = crate::util::fsx::read_text(path)?;
    let commit = text.trim().to_string();
    check_revision(&commit).with_context(|| format!("{}: not a commit hash", path.display()))?;
    Ok(commit)
}

/// The snapshot folder names of a cached repo, sorted.
pub(crate) fn snapshots(repo_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(repo_dir.join("snapshots"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The ref names of a cached repo (`main`, branches, `pr/1`), sorted.
fn refs(repo_dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else if let Ok(rel) = p.strip_prefix(base) {
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    let base = repo_dir.join("refs");
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out.sort();
    out
}

/// The snapshot of one cache folder that `revision` (or, without one, `refs/main`) names.
pub(crate) fn pick_snapshot(repo: &str, repo_dir: &Path, revision: Option<&str>) -> Result<Snapshot> {
    let found = |rev: String, note: Option<String>| -> Result<Snapshot> {
        let dir = repo_dir.join("snapshots").join(&rev);
        if !dir.is_dir() {
            bail!(
                "{}: missing, though the cache's refs name it (an interrupted download?)",
                dir.display()
            );
        }
        Ok(Snapshot {
            revision: rev,
            dir,
            note,
        })
    };
    let listing = |snaps: &[String]| {
        let refs = refs(repo_dir);
        format!(
            "refs: {}; snapshots: {}",
            if refs.is_empty() {
                "none".into()
            } else {
                refs.join(", ")
            },
            if snaps.is_empty() {
                "none".into()
            } else {
                snaps.join(", ")
            }
        )
    };
    match revision {
        Some(rev) => {
            check_revision(rev)?;
            let ref_file = repo_dir.join("refs").join(rev);
            if ref_file.is_file() {
                return found(read_ref(&ref_file)?, None);
            }
            let snaps = snapshots(repo_dir);
            if snaps.iter().any(|s| s == rev) {
                return found(rev.to_string(), None);
            }
            bail!(
                "{}: revision `{rev}` is not in the cache ({}); harness never downloads",
                repo_dir.display(),
                listing(&snaps)
            )
        }
        None => {
            let main = repo_dir.join("refs/main");
            if main.is_file() {
                return found(read_ref(&main)?, None);
            }
            let snaps = snapshots(repo_dir);
            match snaps.as_slice() {
                [] => bail!(
                    "{}: no snapshots in this cache folder (an interrupted download?)",
                    repo_dir.display()
                ),
                [only] => found(
                    only.clone(),
                    Some(format!(
                        "{}: no refs/main; using the only snapshot, {only}",
                        repo_dir.display()
                    )),
                ),
                many => bail!(
                    "{}: no refs/main and {} snapshots ({}); pick one with `{repo}@<revision>`",
                    repo_dir.display(),
                    many.len(),
                    many.join(", ")
                ),
            }
        }
    }
}

/// Resolves a hub id in `cache`. Ok(None) when no spelling of the id has a folder there; an error when a
/// folder exists but the wanted snapshot cannot be picked.
pub(crate) fn resolve_in(id: &HubId, cache: &Path) -> Result<Option<Snapshot>> {
    let mut first_err = None;
    for name in aliases(&id.repo) {
        let dir = cache.join(folder_name(&name));
        if !dir.is_dir() {
            continue;
        }
        match pick_snapshot(&name, &dir, id.revision.as_deref()) {
            Ok(s) => return Ok(Some(s)),
            // the other spelling's folder may hold the revision; report the first failure if none does
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(None),
    }
}

/// The one-line explanation for an id found nowhere: where harness looked and how to get the model.
pub(crate) fn not_found_message(id: &HubId, cache: &Path) -> String {
    let folders: Vec<String> = aliases(&id.repo).iter().map(|a| folder_name(a)).collect();
    let exists = if cache.is_dir() { "" } else { ", which does not exist" };
    let rev = id
        .revision
        .as_deref()
        .map(|r| format!(" --revision {r}"))
        .unwrap_or_default();
    format!(
        "model `{}` is not a local folder, a packaged name, or in the Hugging Face cache (looked for {} in {}{exists}); \
         harness never downloads: run `huggingface-cli download {}{rev}` on a machine with access and copy its cache \
         here (or set HF_HUB_CACHE to it), or give a local folder with config.json, vocab.txt and model.safetensors",
        id.repo,
        folders.join(" and "),
        cache.display(),
        id.repo,
    )
}

/// Every model snapshot in the cache, as (repo id, snapshot, whether `--model <id>` without a revision
/// picks it), sorted by id then revision.
pub(crate) fn scan(cache: &Path) -> Vec<(String, Snapshot, bool)> {
    let mut repos: Vec<(String, PathBuf)> = std::fs::read_dir(cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            repo_of_folder(&name).map(|r| (r, e.path()))
        })
        .filter(|(_, p)| p.is_dir())
        .collect();
    repos.sort();
    let mut out = Vec::new();
    for (repo, dir) in repos {
        let default = pick_snapshot(&repo, &dir, None).ok().map(|s| s.revision);
        for rev in snapshots(&dir) {
            let is_default = default.as_deref() == Some(rev.as_str());
            out.push((
                repo.clone(),
                Snapshot {
                    dir: dir.join("snapshots").join(&rev),
                    revision: rev,
                    note: None,
                },
                is_default,
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_as_huggingface_hub_validates_them() {
        assert_eq!(
            parse_id("distilbert-base-uncased@main"),
            Some(HubId {
                repo: "distilbert-base-uncased".into(),
                revision: Some("main".into())
            })
        );
        assert!(parse_id("sentence-transformers/all-MiniLM-L6-v2").is_some());
        for bad in [
            "../x",
            "/models/x",
            "a/b/c",
            "a--b",
            "a..b",
            "",
            "x/",
            ".x",
            "a b",
            "./x",
        ] {
            assert!(parse_id(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn legacy_and_canonical_ids_alias_each_other() {
        assert_eq!(
            aliases("distilbert-base-uncased"),
            ["distilbert-base-uncased", "distilbert/distilbert-base-uncased"]
        );
        assert_eq!(
            aliases("distilbert/distilbert-base-uncased"),
            ["distilbert/distilbert-base-uncased", "distilbert-base-uncased"]
        );
        assert_eq!(
            aliases("all-mpnet-base-v2"),
            ["all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2"]
        );
        assert_eq!(
            aliases("someone/distilbert-base-uncased"),
            ["someone/distilbert-base-uncased"]
        );
        assert_eq!(folder_name("a/b"), "models--a--b");
        assert_eq!(repo_of_folder("models--a--b").as_deref(), Some("a/b"));
        assert!(repo_of_folder("datasets--a--b").is_none());
    }

    #[test]
    fn revisions_cannot_leave_the_repo_folder() {
        for bad in ["../../x", "/etc", "a/../../b", "", "a\\b"] {
            assert!(check_revision(bad).is_err(), "{bad}");
        }
        assert!(check_revision("pr/1").is_ok());
    }
}
