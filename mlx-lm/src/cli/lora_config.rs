//! `lora -c FILE` / `lora --config FILE`: mlx_lm.lora's YAML configuration files.
//!
//! As in mlx_lm.lora, the file's keys are the flags' names with underscores (`batch_size:
//! 4`, `fine_tune_type: dora`, `lora_parameters: {rank: 16, scale: 10.0, dropout: 0.05}`),
//! and a flag given on the command line wins over the file. The file's entries become flags
//! placed before the command line's ones (the `lora` command takes the last occurrence of a
//! flag), so clap checks every value as it checks a typed flag.
//!
//! Taken besides the flags: `lr_schedule: {name: cosine_decay, warmup: N}` (`--lr-schedule
//! cosine --warmup N`; the decay runs from `--learning-rate` to 0 over `--iters`, so its
//! `arguments` and `warmup_init` are not read, with a warning). Keys of mlx_lm.lora that
//! this command does not have are errors that name them; keys set to `null` are skipped.

use std::ffi::OsString;
use std::path::Path;

use yaml_rust2::{Yaml, YamlLoader};

/// Keys whose value becomes `--key value` (underscores as hyphens).
const VALUE_KEYS: &[&str] = &[
    "model",
    "data",
    "fine_tune_type",
    "optimizer",
    "num_layers",
    "batch_size",
    "iters",
    "val_batches",
    "learning_rate",
    "steps_per_report",
    "steps_per_eval",
    "grad_accumulation_steps",
    "resume_adapter_file",
    "adapter_path",
    "save_every",
    "test_batches",
    "max_seq_length",
    "seed",
    "warmup",
    "device",
];

/// Keys that are switches: `true` becomes `--key`, `false` nothing.
const SWITCH_KEYS: &[&str] = &["train", "test", "mask_prompt", "grad_checkpoint"];

/// Keys of `lora_parameters`, each its own flag.
const LORA_PARAMETER_KEYS: &[&str] = &["rank", "scale", "dropout"];

/// `args` (the program name first) with the entries of a `lora` command's config file
/// spliced in as flags right after `lora`; `args` unchanged for other commands or without
/// `-c` / `--config`. Errors name the file and the key.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    if args.get(1).and_then(|a| a.to_str()) != Some("lora") {
        return Ok(args);
    }
    let Some(path) = config_path(&args[2..]) else {
        return Ok(args);
    };
    let flags = flags_of_file(Path::new(&path))?;
    let mut out = Vec::with_capacity(args.len() + flags.len());
    out.extend(args[..2].iter().cloned());
    out.extend(flags.into_iter().map(OsString::from));
    out.extend(args[2..].iter().cloned());
    Ok(out)
}

/// The value of `-c FILE`, `--config FILE` or `--config=FILE` (the last one given).
fn config_path(args: &[OsString]) -> Option<OsString> {
    let mut found = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--" {
            break;
        }
        if s == "-c" || s == "--config" {
            found = it.next().cloned();
        } else if let Some(v) = s.strip_prefix("--config=") {
            found = Some(OsString::from(v));
        }
    }
    found
}

/// The flags a config file stands for.
fn flags_of_file(path: &Path) -> Result<Vec<String>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {shown}: {e}"))?;
    flags_of_yaml(&text).map_err(|e| format!("config file {shown}: {e}"))
}

/// The flags of a config file's text.
pub fn flags_of_yaml(text: &str) -> Result<Vec<String>, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    let root = match docs.into_iter().next() {
        None => return Ok(Vec::new()),
        Some(Yaml::Hash(h)) => h,
        Some(Yaml::Null) => return Ok(Vec::new()),
        Some(_) => return Err("expected a mapping of flag names to values".into()),
    };
    let mut flags = Vec::new();
    for (k, v) in &root {
        let key = k
            .as_str()
            .ok_or_else(|| format!("key {k:?} is not a string"))?;
        if v.is_null() {
            continue;
        }
        if SWITCH_KEYS.contains(&key) {
            match v.as_bool() {
                Some(true) => flags.push(flag(key)),
                Some(false) => {}
                None => return Err(format!("{key}: expected true or false")),
            }
        } else if VALUE_KEYS.contains(&key) {
            flags.push(valued(key, v)?);
        } else if key == "lora_parameters" {
            lora_parameters(v, &mut flags)?;
        } else if key == "lr_schedule" {
            lr_schedule(v, &mut flags)?;
        } else {
            return Err(format!(
                "key '{key}' is not an option of this command (options: {}, {}, lora_parameters, \
                 lr_schedule)",
                VALUE_KEYS.join(", "),
                SWITCH_KEYS.join(", ")
            ));
        }
    }
    Ok(flags)
}

/// `lora_parameters: {rank, scale, dropout}`.
fn lora_parameters(v: &Yaml, flags: &mut Vec<String>) -> Result<(), String> {
    let Yaml::Hash(h) = v else {
        return Err("lora_parameters: expected a mapping (rank, scale, dropout)".into());
    };
    for (k, v) in h {
        let key = k.as_str().unwrap_or_default();
        if v.is_null() {
            continue;
        }
        if LORA_PARAMETER_KEYS.contains(&key) {
            flags.push(valued(key, v)?);
        } else if key == "keys" {
            return Err(
                "lora_parameters.keys: choosing the adapted layers by name is not supported \
                 (the layers are mlx_lm's defaults for the model)"
                    .into(),
            );
        } else {
            return Err(format!(
                "lora_parameters.{key}: not a LoRA parameter (rank, scale, dropout)"
            ));
        }
    }
    Ok(())
}

/// `lr_schedule: {name: cosine_decay, warmup: N, …}`.
fn lr_schedule(v: &Yaml, flags: &mut Vec<String>) -> Result<(), String> {
    let Yaml::Hash(h) = v else {
        return Err("lr_schedule: expected a mapping (name, warmup)".into());
    };
    let get = |k: &str| h.get(&Yaml::String(k.into())).filter(|v| !v.is_null());
    match get("name").and_then(Yaml::as_str) {
        Some("cosine_decay") => flags.push("--lr-schedule=cosine".into()),
        Some(other) => {
            return Err(format!(
                "lr_schedule.name: '{other}' is not supported (cosine_decay is)"
            ))
        }
        None => return Err("lr_schedule: no name (cosine_decay)".into()),
    }
    if let Some(w) = get("warmup") {
        flags.push(format!("--warmup={}", scalar("lr_schedule.warmup", w)?));
    }
    for ignored in ["arguments", "warmup_init"] {
        if get(ignored).is_some() {
            eprintln!(
                "warning: lr_schedule.{ignored} is not read: the cosine schedule decays from \
                 --learning-rate to 0 over --iters"
            );
        }
    }
    Ok(())
}

/// `--key-name` of `key_name`.
fn flag(key: &str) -> String {
    format!("--{}", key.replace('_', "-"))
}

/// `--key-name=VALUE`: one argument, so that clap reads a value such as `-5` as the
/// flag's value (and checks it) rather than as another flag.
fn valued(key: &str, v: &Yaml) -> Result<String, String> {
    Ok(format!("{}={}", flag(key), scalar(key, v)?))
}

/// A scalar value as the text of a flag's value.
fn scalar(key: &str, v: &Yaml) -> Result<String, String> {
    match v {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Integer(i) => Ok(i.to_string()),
        Yaml::Real(r) => Ok(r.clone()),
        Yaml::Boolean(b) => Ok(b.to_string()),
        _ => Err(format!("{key}: expected a number or a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_flags_in_order() {
        let yaml = "model: m\ntrain: true\ntest: false\nbatch_size: 2\nlearning_rate: 1e-5\n\
                    resume_adapter_file: null\nlora_parameters: {rank: 16, scale: 10.0}\n\
                    lr_schedule: {name: cosine_decay, warmup: 10, arguments: [1e-5, 100]}\n";
        let flags = flags_of_yaml(yaml).unwrap();
        let want = [
            "--model=m",
            "--train",
            "--batch-size=2",
            "--learning-rate=1e-5",
            "--rank=16",
            "--scale=10.0",
            "--lr-schedule=cosine",
            "--warmup=10",
        ];
        assert_eq!(flags, want);
        assert!(flags_of_yaml("").unwrap().is_empty());
    }

    #[test]
    fn what_cannot_be_taken_is_named() {
        for (yaml, part) in [
            ("hf_dataset: {path: x}\n", "key 'hf_dataset'"),
            (
                "lora_parameters: {keys: [q_proj]}\n",
                "lora_parameters.keys",
            ),
            ("lora_parameters: {alpha: 2}\n", "lora_parameters.alpha"),
            ("lr_schedule: {name: linear}\n", "'linear'"),
            ("train: yes please\n", "train: expected true or false"),
            ("- a\n- b\n", "expected a mapping"),
            ("iters: {a: 1}\n", "iters: expected a number"),
        ] {
            let err = flags_of_yaml(yaml).unwrap_err();
            assert!(err.contains(part), "{yaml:?}: {err}");
        }
    }

    #[test]
    fn only_a_lora_command_with_a_config_is_changed() {
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let plain = os(&["qwen3", "generate", "-c", "x.yaml"]);
        assert_eq!(expand(plain.clone()).unwrap(), plain);
        let no_config = os(&["qwen3", "lora", "--iters", "3"]);
        assert_eq!(expand(no_config.clone()).unwrap(), no_config);
        let err = expand(os(&["qwen3", "lora", "--config=/nonexistent.yaml"])).unwrap_err();
        assert!(err.contains("/nonexistent.yaml"), "{err}");
    }
}
