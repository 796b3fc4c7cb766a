//! The memory limits the operating system puts on this process, besides physical memory:
//! `ulimit -v` (`RLIMIT_AS`, address space), `ulimit -d` (`RLIMIT_DATA`, private writable
//! memory since Linux 4.7) and the memory limit of the process's cgroup (v2 `memory.max`
//! or v1 `memory.limit_in_bytes`, of its cgroup and every ancestor). An allocation past
//! any of them fails; MLX's CPU allocator does not check, and writes through the null
//! pointer. [`headroom`] is what is left under the tightest one; the memory guard
//! (`raw::check_fits`) refuses arrays larger than it.
//!
//! Reading these costs system calls and small `/proc` and `/sys` reads (each read of a
//! cgroup file took ~25 µs on a sandboxed 2-core machine; finding the cgroup limits takes
//! about ten of them), so the result is kept for [`FRESH`] and recomputed only for arrays
//! that are not small next to it; a recomputation reads only the usage of the cgroups
//! that have a limit, and which cgroups have one (and how much) is looked up again every
//! [`DISCOVER`]: a cgroup limit set or changed while the process runs counts from then on.
//!
//! Every op that makes an array of 4 KiB or more asks; so that this costs no lock and no
//! clock read, [`fits_quickly`] first spends from a budget of a sixteenth of the headroom
//! computed last, with atomics, for at most [`QUICK_USES`] arrays; only then is the
//! cache consulted (and its age read).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a computed headroom is reused for small arrays.
const FRESH: Duration = Duration::from_millis(50);

/// How long the cgroup memory limits found (the folders that have one, and its value) are
/// reused by recomputations.
const DISCOVER: Duration = Duration::from_secs(1);

/// An array smaller than this fraction of the last known headroom is checked against it
/// without recomputing.
const SMALL_FRACTION: u128 = 16;

/// Room left under the tightest limit, and a description of that limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Headroom {
    /// Bytes that may still be allocated.
    pub(crate) bytes: u128,
    /// The limit, for messages: e.g. `address-space limit (ulimit -v) 2.0 GiB` (shared:
    /// every checked array gets a copy).
    pub(crate) limit: Arc<str>,
    /// The limit's size in bytes.
    pub(crate) limit_bytes: u128,
}

/// How many arrays [`fits_quickly`] passes before the headroom is looked at again.
const QUICK_USES: u32 = 256;

/// The largest array [`fits_quickly`] passes: larger ones always look at the headroom (so
/// all it passes between two looks stay under `QUICK_USES` × this, 256 MiB, even where
/// no limit was known).
const QUICK_MAX_BYTES: u128 = 1 << 20;

/// The budget behind [`fits_quickly`].
static QUICK: QuickBudget = QuickBudget::new();

/// Bytes that may be passed without looking at the headroom, and how many arrays were.
struct QuickBudget {
    /// A [`SMALL_FRACTION`] of the headroom known last, less what was passed since
    /// (`u64::MAX` when no limit applies; 0 before the first look).
    bytes: AtomicU64,
    /// Arrays passed since the headroom was looked at.
    passed: AtomicU32,
}

impl QuickBudget {
    const fn new() -> Self {
        QuickBudget {
            bytes: AtomicU64::new(0),
            passed: AtomicU32::new(0),
        }
    }

    /// Takes `need` from the budget, for at most [`QUICK_USES`] arrays in a row.
    fn take(&self, need: u128) -> bool {
        if need > QUICK_MAX_BYTES {
            return false;
        }
        let need = need as u64;
        self.passed.fetch_add(1, Ordering::Relaxed) < QUICK_USES
            && self
                .bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    if b == u64::MAX {
                        Some(b)
                    } else {
                        b.checked_sub(need)
                    }
                })
                .is_ok()
    }

    /// Refills the budget from a headroom just looked at.
    fn refill(&self, value: &Option<Headroom>) {
        let bytes = match value {
            Some(h) => u64::try_from(h.bytes / SMALL_FRACTION).unwrap_or(u64::MAX - 1),
            None => u64::MAX,
        };
        self.bytes.store(bytes, Ordering::Relaxed);
        self.passed.store(0, Ordering::Relaxed);
    }
}

/// Whether `need` bytes surely fit under the process's limits, decided without a lock, a
/// clock read or a system call: it takes `need` from the budget that the last call of
/// [`headroom`] set, for at most [`QUICK_USES`] arrays in a row of at most
/// [`QUICK_MAX_BYTES`] each, so all the arrays it passes together stay under a
/// [`SMALL_FRACTION`] of the headroom then known. `false` means "ask [`headroom`]", not
/// "does not fit".
pub(crate) fn fits_quickly(need: u128) -> bool {
    QUICK.take(need)
}

struct Cached {
    at: Instant,
    value: Option<Headroom>,
    /// The cgroups with a memory limit, as found at `found_at`.
    cgroups: Vec<CgroupLimit>,
    found_at: Instant,
}

/// A cgroup folder with a finite memory limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CgroupLimit {
    dir: PathBuf,
    limit: u128,
    /// The file with its current usage.
    usage_file: &'static str,
}

impl CgroupLimit {
    /// Bytes left under this limit now (`None` if its usage cannot be read).
    fn free(&self) -> Option<u128> {
        let usage = read_number(&self.dir.join(self.usage_file))?;
        Some(self.limit.saturating_sub(usage))
    }
}

static CACHE: Mutex<Option<Cached>> = Mutex::new(None);

/// The headroom under the process's limits for an allocation of `need` bytes, or `None`
/// when no limit applies.
pub(crate) fn headroom(need: u128) -> Option<Headroom> {
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cache.as_ref() {
        let small = match &c.value {
            Some(h) => need.saturating_mul(SMALL_FRACTION) < h.bytes,
            None => true,
        };
        if small && c.at.elapsed() < FRESH {
            QUICK.refill(&c.value);
            return c.value.clone();
        }
    }
    let now = Instant::now();
    let (cgroups, found_at) = match cache.take() {
        Some(c) if now.duration_since(c.found_at) < DISCOVER => (c.cgroups, c.found_at),
        _ => (
            cgroup_limits(Path::new("/proc/self/cgroup"), Path::new("/sys/fs/cgroup")),
            now,
        ),
    };
    let value = compute(&cgroups);
    QUICK.refill(&value);
    *cache = Some(Cached {
        at: now,
        value: value.clone(),
        cgroups,
        found_at,
    });
    value
}

/// The address-space room left under `RLIMIT_AS`, if it is set (for the deep stack's
/// reservation).
pub(crate) fn address_space_room() -> Option<u128> {
    let limit = rlimit(libc::RLIMIT_AS as _)?;
    let (size, _) = statm()?;
    Some(limit.saturating_sub(size))
}

fn compute(cgroups: &[CgroupLimit]) -> Option<Headroom> {
    let mut best: Option<Headroom> = None;
    let mut consider = |bytes: u128, limit: String, limit_bytes: u128| {
        if best.as_ref().is_none_or(|b| bytes < b.bytes) {
            best = Some(Headroom {
                bytes,
                limit: limit.into(),
                limit_bytes,
            });
        }
    };
    let address_space = rlimit(libc::RLIMIT_AS as _);
    let data = if cfg!(target_os = "linux") {
        rlimit(libc::RLIMIT_DATA as _)
    } else {
        None
    };
    // The process's sizes are read only when a limit needs them.
    let usage = if address_space.is_some() || data.is_some() {
        statm()
    } else {
        None
    };
    if let (Some(limit), Some((size, _))) = (address_space, usage) {
        consider(
            limit.saturating_sub(size),
            "address-space limit (ulimit -v)".into(),
            limit,
        );
    }
    if let (Some(limit), Some((_, data))) = (data, usage) {
        consider(
            limit.saturating_sub(data),
            "data-segment limit (ulimit -d)".into(),
            limit,
        );
    }
    if let Some((free, c)) = tightest_cgroup(cgroups) {
        consider(
            free,
            format!("cgroup memory limit ({})", c.dir.display()),
            c.limit,
        );
    }
    best
}

/// The cgroup with the least room left, and that room.
fn tightest_cgroup(cgroups: &[CgroupLimit]) -> Option<(u128, &CgroupLimit)> {
    cgroups
        .iter()
        .filter_map(|c| Some((c.free()?, c)))
        .min_by_key(|(free, _)| *free)
}

/// The soft limit of `resource`, if finite.
fn rlimit(resource: libc::c_int) -> Option<u128> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct passed.
    if unsafe { libc::getrlimit(resource as _, &mut r) } != 0 || r.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(r.rlim_cur as u128)
}

/// `(address-space size, data + stack size)` in bytes, from `/proc/self/statm`.
fn statm() -> Option<(u128, u128)> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let fields: Vec<u128> = text
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u128;
    Some((fields.first()? * page, fields.get(5)? * page))
}

/// The tightest cgroup memory limit over the process's cgroup and its ancestors:
/// `(bytes free, limit, cgroup folder)`. `proc_cgroup` is `/proc/self/cgroup`, `root`
/// the cgroup mount (`/sys/fs/cgroup`).
#[cfg(test)]
pub(crate) fn cgroup_room(proc_cgroup: &Path, root: &Path) -> Option<(u128, u128, PathBuf)> {
    let limits = cgroup_limits(proc_cgroup, root);
    tightest_cgroup(&limits).map(|(free, c)| (free, c.limit, c.dir.clone()))
}

/// The finite memory limits of the process's cgroup and its ancestors (see
/// [`cgroup_room`] for the arguments).
pub(crate) fn cgroup_limits(proc_cgroup: &Path, root: &Path) -> Vec<CgroupLimit> {
    let Ok(text) = std::fs::read_to_string(proc_cgroup) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (base, limit_file, usage_file) = if controllers.is_empty() {
            (root.to_path_buf(), "memory.max", "memory.current")
        } else if controllers.split(',').any(|c| c == "memory") {
            (
                root.join("memory"),
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )
        } else {
            continue;
        };
        for dir in cgroup_dirs(&base, path) {
            let Some(limit) = read_number(&dir.join(limit_file)) else {
                continue;
            };
            // v1 writes "no limit" as a huge page-rounded number.
            if limit >= 1 << 62 {
                continue;
            }
            found.push(CgroupLimit {
                dir,
                limit,
                usage_file,
            });
        }
    }
    found
}

/// The cgroup folder of `path` under `base` and its ancestors up to `base`. Inside a
/// container the mount shows only the container's part of the tree, so leading parts of
/// `path` that are not there are dropped.
fn cgroup_dirs(base: &Path, path: &str) -> Vec<PathBuf> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let start = (0..=parts.len())
        .find(|&i| base.join(parts[i..].join("/")).is_dir())
        .unwrap_or(parts.len());
    let rel = &parts[start..];
    (0..=rel.len())
        .rev()
        .map(|n| base.join(rel[..n].join("/")))
        .collect()
}

/// A number in a cgroup file (`max` for no limit gives `None`).
fn read_number(path: &Path) -> Option<u128> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_budget_passes_a_sixteenth_of_the_headroom_then_asks() {
        let q = QuickBudget::new();
        assert!(!q.take(1), "nothing passes before the first look");
        let room = |bytes| {
            Some(Headroom {
                bytes,
                limit: "test limit".into(),
                limit_bytes: bytes,
            })
        };
        q.refill(&room(16_000));
        assert!(!q.take(1001));
        assert!(q.take(600));
        assert!(q.take(400));
        assert!(!q.take(1), "1,000 bytes (a sixteenth of 16,000) are spent");
        q.refill(&room(16 << 30));
        for _ in 0..QUICK_USES {
            assert!(q.take(4096));
        }
        assert!(!q.take(4096), "only QUICK_USES arrays in a row");
        q.refill(&None);
        assert!(
            q.take(QUICK_MAX_BYTES),
            "no limit: arrays up to QUICK_MAX_BYTES"
        );
        assert!(!q.take(QUICK_MAX_BYTES + 1), "larger ones always look");
    }

    fn tree(files: &[(&str, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "mlx-rs-cgroup-{}-{}",
            std::process::id(),
            files.len()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        dir
    }

    #[test]
    fn cgroup_v2_limit_of_the_tightest_ancestor() {
        let d = tree(&[
            ("proc", "0::/a/b\n"),
            ("fs/a/memory.max", "1000\n"),
            ("fs/a/memory.current", "900\n"),
            ("fs/a/b/memory.max", "max\n"),
            ("fs/a/b/memory.current", "500\n"),
        ]);
        let (free, limit, dir) = cgroup_room(&d.join("proc"), &d.join("fs")).unwrap();
        assert_eq!((free, limit), (100, 1000));
        assert!(dir.ends_with("fs/a"));
    }

    #[test]
    fn cgroup_v1_memory_controller_inside_a_container() {
        // The mount shows the container's own cgroup as its root.
        let d = tree(&[
            ("proc", "4:memory:/docker/abc\n3:cpu:/docker/abc\n"),
            ("fs/memory/memory.limit_in_bytes", "2048\n"),
            ("fs/memory/memory.usage_in_bytes", "48\n"),
        ]);
        let (free, limit, _) = cgroup_room(&d.join("proc"), &d.join("fs")).unwrap();
        assert_eq!((free, limit), (2000, 2048));
    }

    #[test]
    fn no_cgroup_limit() {
        let d = tree(&[
            ("proc", "4:memory:/x\n0::/\n"),
            ("fs/memory/x/memory.limit_in_bytes", "9223372036854771712\n"),
            ("fs/memory/x/memory.usage_in_bytes", "1\n"),
            ("fs/memory.max", "max\n"),
        ]);
        assert_eq!(cgroup_room(&d.join("proc"), &d.join("fs")), None);
    }
}
