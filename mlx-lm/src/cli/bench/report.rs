//! `bench`'s measurements: one side's numbers, medians over rounds, the table and the JSON.

use serde_json::{json, Value};

/// One side's measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Prompt tokens per second, until the first generated token was available.
    pub prefill_tps: f64,
    /// Generated tokens per second after the first one.
    pub decode_tps: f64,
    /// Peak MLX memory.
    pub peak_mem_bytes: u64,
    /// Peak MLX memory until the first generated token (the prefill's share of
    /// `peak_mem_bytes`); 0 when not measured.
    pub prefill_peak_bytes: u64,
    /// Prompt tokens per second of process CPU time (all threads): on a shared machine
    /// a steadier measure than wall-clock time of how much work each side does.
    pub prefill_tps_cpu: f64,
    /// Generated tokens per second of process CPU time.
    pub decode_tps_cpu: f64,
    /// Ours only: host microseconds per decode step spent building the step's graph and
    /// handing it to MLX (see `GenerationStats::build_time`).
    pub host_us: Option<(f64, f64)>,
}

impl Measured {
    /// The JSON form, as in the `--json` report.
    pub fn to_json(&self) -> Value {
        json!({
            "prefill_tps": self.prefill_tps,
            "decode_tps": self.decode_tps,
            "peak_mem_bytes": self.peak_mem_bytes,
            "prefill_peak_mem_bytes": self.prefill_peak_bytes,
            "prefill_tps_cpu": self.prefill_tps_cpu,
            "decode_tps_cpu": self.decode_tps_cpu,
            "decode_build_us": self.host_us.map(|h| h.0),
            "decode_submit_us": self.host_us.map(|h| h.1),
        })
    }

    /// Medians of the rates, the largest peak.
    pub fn summarize(runs: &[Measured]) -> Measured {
        let med = |f: fn(&Measured) -> f64| median(runs.iter().map(f).collect());
        Measured {
            prefill_tps: med(|r| r.prefill_tps),
            decode_tps: med(|r| r.decode_tps),
            peak_mem_bytes: runs.iter().map(|r| r.peak_mem_bytes).max().unwrap_or(0),
            prefill_peak_bytes: runs.iter().map(|r| r.prefill_peak_bytes).max().unwrap_or(0),
            prefill_tps_cpu: med(|r| r.prefill_tps_cpu),
            decode_tps_cpu: med(|r| r.decode_tps_cpu),
            host_us: runs.iter().all(|r| r.host_us.is_some()).then(|| {
                let build = median(runs.iter().filter_map(|r| r.host_us).map(|h| h.0).collect());
                let submit = median(runs.iter().filter_map(|r| r.host_us).map(|h| h.1).collect());
                (build, submit)
            }),
        }
    }
}

/// The median (0 for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `n / seconds`, 0 when no time passed.
pub fn rate(n: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// Prints the table: ours, and the peer with the ratio when there is one; the rates per
/// CPU-second too on the CPU.
pub fn print_table(ours: &Measured, peer: Option<&Measured>, cpu: bool) {
    let gb = |b: u64| format!("{:.3} GB", b as f64 / 1e9);
    let tps = |x: f64| format!("{x:.1}");
    let ratio = |a: f64, b: f64| {
        if a.is_finite() && b.is_finite() && b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "-".into()
        }
    };
    type Row<'a> = (&'a str, fn(&Measured) -> f64, bool);
    let mut rows: Vec<Row> = vec![
        ("prefill tok/s", |m| m.prefill_tps, false),
        ("decode tok/s", |m| m.decode_tps, false),
    ];
    if cpu {
        rows.push(("prefill tok/cpu-s", |m| m.prefill_tps_cpu, false));
        rows.push(("decode tok/cpu-s", |m| m.decode_tps_cpu, false));
    }
    rows.push(("peak memory", |m| m.peak_mem_bytes as f64, true));
    if ours.prefill_peak_bytes > 0 {
        rows.push(("peak in prefill", |m| m.prefill_peak_bytes as f64, true));
    }
    let show = |m: &Measured, f: fn(&Measured) -> f64, mem: bool| {
        if mem {
            gb(f(m) as u64)
        } else {
            tps(f(m))
        }
    };
    match peer {
        Some(p) => {
            println!(
                "{:<18} {:>12} {:>12} {:>12}",
                "", "ours", "mlx-lm", "ours/mlx-lm"
            );
            for (name, f, mem) in rows {
                println!(
                    "{name:<18} {:>12} {:>12} {:>12}",
                    show(ours, f, mem),
                    show(p, f, mem),
                    ratio(f(ours), f(p))
                );
            }
        }
        None => {
            println!("{:<18} {:>12}", "", "ours");
            for (name, f, mem) in rows {
                println!("{name:<18} {:>12}", show(ours, f, mem));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn rates() {
        assert_eq!(rate(10, 2.0), 5.0);
        assert_eq!(rate(10, 0.0), 0.0);
    }
}
