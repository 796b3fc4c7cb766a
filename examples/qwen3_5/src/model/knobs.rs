//! The `QWEN3_5_*` environment switches of the model's speed-ups (each read once per
//! process; `benches/README.md` lists them). A value that is not understood is reported
//! once on stderr and the default is used, so a typo never changes results silently.

use std::cell::Cell;
use std::collections::HashSet;
use std::sync::Mutex;
use std::thread::LocalKey;

/// Runs `f` with `value` in the per-thread override `slot` (how tests and benchmarks choose
/// a path whatever the environment says); the previous value is restored afterwards, also
/// when `f` panics.
pub fn with_override<T: Copy + 'static, R>(
    slot: &'static LocalKey<Cell<Option<T>>>,
    value: T,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<T: Copy + 'static>(&'static LocalKey<Cell<Option<T>>>, Option<T>);
    impl<T: Copy + 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            self.0.with(|o| o.set(self.1));
        }
    }
    let _restore = Restore(slot, slot.with(|o| o.replace(Some(value))));
    f()
}

/// Reports a bad value of `name` once per variable.
fn warn_once(name: &str, value: &str, expected: &str, default: &str) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if seen
        .get_or_insert_with(HashSet::new)
        .insert(name.to_string())
    {
        eprintln!("{name}={value:?} is not {expected}: using {default}");
    }
}

/// An on/off switch: `1`/`true`/`on` or `0`/`false`/`off`; unset, empty or not understood
/// (reported once) gives `default`.
pub fn flag(name: &str, default: bool) -> bool {
    switch(name).unwrap_or(default)
}

/// An on/off switch whose default depends on the device: `Some` when `name` is set to
/// `1`/`true`/`on` or `0`/`false`/`off`, `None` (use the default) when it is unset, empty
/// or not understood (reported once).
pub fn switch(name: &str) -> Option<bool> {
    let v = std::env::var(name).ok()?;
    match v.trim().to_ascii_lowercase().as_str() {
        "" => None,
        "1" | "true" | "on" => Some(true),
        "0" | "false" | "off" => Some(false),
        _ => {
            warn_once(name, &v, "0 or 1", "the default");
            None
        }
    }
}

/// Whether ops built now run on a GPU other than Metal: the default of the host-bound
/// decode speed-ups measured on CUDA and not yet on Apple silicon.
pub fn gpu_not_metal() -> bool {
    !cfg!(target_os = "macos") && !super::linear::on_cpu()
}

/// A count in `1..=max`: unset gives `default`; other values are clamped into the range,
/// and what is not a whole number is reported and gives `default`.
pub fn count(name: &str, default: usize, max: usize) -> usize {
    match std::env::var(name) {
        Err(_) => default.clamp(1, max),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) => n.clamp(1, max),
            Err(_) => {
                warn_once(
                    name,
                    &v,
                    &format!("a whole number from 1 to {max}"),
                    &default.to_string(),
                );
                default.clamp(1, max)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_counts_parse_or_fall_back() {
        // Names no other test uses (the environment is shared by the test threads).
        std::env::set_var("QWEN3_5_TEST_FLAG_A", "off");
        std::env::set_var("QWEN3_5_TEST_FLAG_B", "maybe");
        std::env::set_var("QWEN3_5_TEST_FLAG_C", " 1 ");
        assert!(!flag("QWEN3_5_TEST_FLAG_A", true));
        assert_eq!(switch("QWEN3_5_TEST_FLAG_A"), Some(false));
        assert_eq!(switch("QWEN3_5_TEST_FLAG_B"), None);
        assert_eq!(switch("QWEN3_5_TEST_FLAG_C"), Some(true));
        assert_eq!(switch("QWEN3_5_TEST_FLAG_UNSET"), None);
        assert!(flag("QWEN3_5_TEST_FLAG_B", true));
        assert!(!flag("QWEN3_5_TEST_FLAG_B", false));
        assert!(flag("QWEN3_5_TEST_FLAG_C", false));
        assert!(flag("QWEN3_5_TEST_FLAG_UNSET", true));
        std::env::set_var("QWEN3_5_TEST_COUNT_A", "3");
        std::env::set_var("QWEN3_5_TEST_COUNT_B", "99");
        std::env::set_var("QWEN3_5_TEST_COUNT_C", "two");
        std::env::set_var("QWEN3_5_TEST_COUNT_D", "0");
        assert_eq!(count("QWEN3_5_TEST_COUNT_A", 2, 8), 3);
        assert_eq!(count("QWEN3_5_TEST_COUNT_B", 2, 8), 8);
        assert_eq!(count("QWEN3_5_TEST_COUNT_C", 2, 8), 2);
        assert_eq!(count("QWEN3_5_TEST_COUNT_D", 2, 8), 1);
        assert_eq!(count("QWEN3_5_TEST_COUNT_UNSET", 20, 8), 8);
    }
}
