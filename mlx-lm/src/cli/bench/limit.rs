//! The memory-bandwidth bound of decode: a decode step reads every weight once, so a card
//! that moves `B` bytes per second decodes at most `B / weight bytes` tokens per second
//! (batch 1, before the cache's reads). `bench` prints it next to the measured rate.

use serde_json::{json, Value};

/// Memory bandwidth (GB/s) of the cards known by name, as their makers state it: what a
/// bench on them compares against unless `--bandwidth` says otherwise.
const KNOWN_CARDS: &[(&str, f64)] = &[("H200", 4800.0), ("H100", 3350.0), ("A100", 2039.0)];

/// The bandwidth of the device `name` (as `describe_device` prints it) when the card is
/// known.
pub fn known_bandwidth(name: &str) -> Option<f64> {
    KNOWN_CARDS
        .iter()
        .find(|(card, _)| name.contains(card))
        .map(|&(_, gbps)| gbps)
}

/// The bound of one model on one device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeLimit {
    /// Bytes of the model's parameters (each read once per decode step).
    pub weight_bytes: u64,
    /// Memory bandwidth, GB/s.
    pub bandwidth_gbps: f64,
}

impl DecodeLimit {
    /// Tokens per second the bandwidth allows.
    pub fn tokens_per_second(&self) -> f64 {
        self.bandwidth_gbps * 1e9 / self.weight_bytes.max(1) as f64
    }

    /// The line `bench` prints under its table, with the share of the bound `decode_tps`
    /// reaches.
    pub fn line(&self, decode_tps: f64) -> String {
        let limit = self.tokens_per_second();
        format!(
            "decode limit: {:.3} GB of weights at {:.0} GB/s = {limit:.0} tok/s (ours at {:.0} %)",
            self.weight_bytes as f64 / 1e9,
            self.bandwidth_gbps,
            100.0 * decode_tps / limit
        )
    }

    /// The JSON form.
    pub fn to_json(self) -> Value {
        json!({
            "weight_bytes": self.weight_bytes,
            "bandwidth_gbps": self.bandwidth_gbps,
            "decode_limit_tps": self.tokens_per_second(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_of_the_2b_on_an_h200() {
        assert_eq!(known_bandwidth("gpu (NVIDIA H200)"), Some(4800.0));
        assert_eq!(known_bandwidth("cpu (AMD EPYC 9R14)"), None);
        let l = DecodeLimit {
            weight_bytes: 3_760_000_000,
            bandwidth_gbps: 4800.0,
        };
        assert!((l.tokens_per_second() - 1276.6).abs() < 0.1);
        assert!(
            l.line(400.0).contains("= 1277 tok/s (ours at 31 %)"),
            "{}",
            l.line(400.0)
        );
    }
}
