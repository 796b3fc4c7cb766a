//! Sampling against mlx-lm 0.32.2's filters, penalties and seeded draws
//! (tests/oracle/gen_qwen.py), plus behaviour checks.

use crate::common::{self, cpu};

use mlx_lm::{Sampler, SamplingParams};
use mlx_rs::{Array, Dtype};
use serde_json::Value;

fn fixture() -> Value {
    let path = common::fixtures().join("sampling.expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn params_from(v: &Value) -> SamplingParams {
    let mut p = SamplingParams {
        temperature: 1.0,
        ..Default::default()
    };
    let o = v.as_object().unwrap();
    let f = |k: &str| o.get(k).map(|x| x.as_f64().unwrap());
    if let Some(x) = f("top_p") {
        p.top_p = x as f32;
    }
    if let Some(x) = f("min_p") {
        p.min_p = x as f32;
    }
    if let Some(x) = f("top_k") {
        p.top_k = x as usize;
    }
    if let Some(x) = f("min_tokens_to_keep") {
        p.min_tokens_to_keep = x as usize;
    }
    if let Some(x) = f("repetition_penalty") {
        p.repetition_penalty = x as f32;
    }
    if let Some(x) = f("repetition_context_size") {
        p.repetition_context_size = x as usize;
    }
    if let Some(x) = f("presence_penalty") {
        p.presence_penalty = x as f32;
    }
    if let Some(x) = f("presence_context_size") {
        p.presence_context_size = x as usize;
    }
    p
}

fn logprobs(logits: &Array) -> Array {
    logits
        .subtract(&mlx_rs::ops::logsumexp_axis(logits, -1, true).unwrap())
        .unwrap()
}

#[test]
fn filters_keep_the_same_tokens_as_mlx_lm() {
    cpu(|| {
        let fx = fixture();
        let lp = logprobs(&super::common::json_array(&fx["logits"]));
        for case in fx["filters"].as_array().unwrap() {
            let sampler = Sampler::new(params_from(&case["params"])).unwrap();
            let out = sampler
                .filter_logprobs(&lp)
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            let kept: Vec<i64> = out.iter().map(|x| x.is_finite() as i64).collect();
            let want: Vec<i64> = case["kept"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect();
            assert_eq!(kept, want, "{}", case["params"]);
        }
    })
}

#[test]
fn penalties_match_mlx_lm() {
    cpu(|| {
        let fx = fixture();
        let logits = super::common::json_array(&fx["logits"]);
        let history: Vec<u32> = fx["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let history = Array::from_slice(&history, &[history.len() as i32]).unwrap();
        for case in fx["penalties"].as_array().unwrap() {
            let sampler = Sampler::new(params_from(&case["params"])).unwrap();
            let out = sampler
                .process_logits(&logits, Some(&history), None)
                .unwrap();
            let want: Vec<f32> = case["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            common::assert_close(
                &case["params"].to_string(),
                &out.to_vec::<f32>().unwrap(),
                &want,
                1e-6,
                1e-6,
            );
        }
    })
}

#[test]
fn seeded_draws_match_mlx_lm() {
    cpu(|| {
        let fx = fixture();
        let logits = super::common::json_array(&fx["logits"]);
        let row = mlx_rs::ops::slice(&logits, &[0, 0], &[1, 64], &[1, 1]).unwrap();
        for (temp, top_k) in [(0.8f32, 20usize), (1.5, 0)] {
            let want: Vec<u32> = fx["draws"][format!("{temp}/{top_k}")]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            let params = SamplingParams {
                temperature: temp,
                top_k,
                seed: Some(fx["seed"].as_u64().unwrap()),
                ..Default::default()
            };
            let mut sampler = Sampler::new(params).unwrap();
            let got: Vec<u32> = (0..want.len())
                .map(|_| {
                    sampler
                        .sample(&row, None, None)
                        .unwrap()
                        .item::<u32>()
                        .unwrap()
                })
                .collect();
            assert_eq!(got, want, "temperature {temp}, top_k {top_k}");
        }
    })
}

fn draw_many(params: SamplingParams, logits: &[f32], n: i32) -> Vec<u32> {
    let v = logits.len() as i32;
    let row = Array::from_slice(logits, &[1, v]).unwrap();
    let rows = mlx_rs::ops::broadcast_to(&row, &[n, v]).unwrap();
    let mut s = Sampler::new(params).unwrap();
    s.sample(&rows, None, None)
        .unwrap()
        .to_vec::<u32>()
        .unwrap()
}

#[test]
fn temperature_sampling_follows_the_softmax() {
    cpu(|| {
        let logits = [1.0f32, 0.0, -1.0, 0.5];
        for temp in [1.0f32, 0.5] {
            let draws = draw_many(
                SamplingParams {
                    temperature: temp,
                    seed: Some(3),
                    ..Default::default()
                },
                &logits,
                4000,
            );
            let z: f32 = logits.iter().map(|l| (l / temp).exp()).sum();
            for (i, l) in logits.iter().enumerate() {
                let p = (l / temp).exp() / z;
                let f =
                    draws.iter().filter(|&&t| t as usize == i).count() as f32 / draws.len() as f32;
                assert!(
                    (f - p).abs() < 0.03,
                    "temperature {temp}: token {i} drawn {f}, softmax {p}"
                );
            }
        }
    })
}

/// Temperatures below 1e-5 are greedy: at 1e-45 `1 / temp` overflows to infinity and the
/// scores became NaN (the draw was then arbitrary), for every dtype of the logits.
#[test]
fn tiny_temperatures_are_greedy() {
    cpu(|| {
        let logits = [0.25f32, 3.0, -1.0, 2.9, 0.0];
        for temp in [1e-45f32, 1e-38, 1e-30, 1e-6, 9.9e-6] {
            for dtype in [Dtype::Float32, Dtype::Bfloat16, Dtype::Float16] {
                let row = Array::from_slice(&logits, &[1, 5])
                    .unwrap()
                    .astype(dtype)
                    .unwrap();
                let rows = mlx_rs::ops::broadcast_to(&row, &[64, 5]).unwrap();
                let mut s = Sampler::new(SamplingParams {
                    temperature: temp,
                    seed: Some(7),
                    ..Default::default()
                })
                .unwrap();
                let draws = s
                    .sample(&rows, None, None)
                    .unwrap()
                    .to_vec::<u32>()
                    .unwrap();
                assert!(
                    draws.iter().all(|&t| t == 1),
                    "temperature {temp}, {dtype:?}: {draws:?}"
                );
            }
        }
    })
}

#[test]
fn filters_restrict_the_draws() {
    cpu(|| {
        // probabilities 0.5, 0.3, 0.15, 0.05
        let logits: Vec<f32> = [0.5f32, 0.3, 0.15, 0.05].iter().map(|p| p.ln()).collect();
        let only = |p: SamplingParams, allowed: &[u32]| {
            let draws = draw_many(p, &logits, 500);
            assert!(draws.iter().all(|t| allowed.contains(t)), "{draws:?}");
            for a in allowed {
                assert!(draws.contains(a), "{a} never drawn");
            }
        };
        let base = SamplingParams {
            temperature: 1.0,
            seed: Some(5),
            ..Default::default()
        };
        only(
            SamplingParams {
                top_k: 2,
                ..base.clone()
            },
            &[0, 1],
        );
        only(
            SamplingParams {
                top_p: 0.7,
                ..base.clone()
            },
            &[0, 1],
        );
        only(
            SamplingParams {
                min_p: 0.5,
                ..base.clone()
            },
            &[0, 1],
        );
        only(
            SamplingParams {
                min_p: 0.5,
                min_tokens_to_keep: 3,
                ..base.clone()
            },
            &[0, 1, 2],
        );
        only(
            SamplingParams {
                top_k: 1,
                ..base.clone()
            },
            &[0],
        );
        // Greedy ignores the seed; masking the vocabulary excludes the best id.
        let mut g = Sampler::new(SamplingParams::greedy()).unwrap();
        let row = Array::from_slice(&logits, &[1, 4]).unwrap();
        assert_eq!(
            g.sample(&row, None, None).unwrap().to_vec::<u32>().unwrap(),
            [0]
        );
        let rev: Vec<f32> = logits.iter().rev().cloned().collect();
        let row = Array::from_slice(&rev, &[1, 4]).unwrap();
        // ids 0..3 of the reversed row are 0.05, 0.15, 0.3: the best allowed is 2.
        assert_eq!(
            g.sample(&row, None, Some(3))
                .unwrap()
                .to_vec::<u32>()
                .unwrap(),
            [2]
        );
    })
}

#[test]
fn seeds_reproduce_and_differ() {
    cpu(|| {
        let logits = vec![0.0f32; 32];
        let run = |seed| {
            let row = Array::from_slice(&logits, &[1, 32]).unwrap();
            let mut s = Sampler::new(SamplingParams {
                temperature: 1.0,
                seed: Some(seed),
                ..Default::default()
            })
            .unwrap();
            (0..20)
                .map(|_| s.sample(&row, None, None).unwrap().item::<u32>().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    })
}

#[test]
fn bad_parameters_are_rejected() {
    let cases = [
        (
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            },
            "temperature",
        ),
        (
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            "top_p",
        ),
        (
            SamplingParams {
                top_p: 1.5,
                ..Default::default()
            },
            "top_p",
        ),
        (
            SamplingParams {
                min_p: -0.1,
                ..Default::default()
            },
            "min_p",
        ),
        (
            SamplingParams {
                min_tokens_to_keep: 0,
                ..Default::default()
            },
            "min_tokens_to_keep",
        ),
        (
            SamplingParams {
                repetition_penalty: 0.0,
                ..Default::default()
            },
            "repetition_penalty",
        ),
        (
            SamplingParams {
                presence_penalty: f32::INFINITY,
                ..Default::default()
            },
            "presence_penalty",
        ),
        (
            SamplingParams {
                frequency_penalty: f32::NAN,
                ..Default::default()
            },
            "frequency_penalty",
        ),
    ];
    for (p, name) in cases {
        let err = Sampler::new(p).err().expect(name).to_string();
        assert!(err.contains(name), "{err}");
    }
    cpu(|| {
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        let flat = Array::from_slice(&[1.0f32, 2.0], &[2]).unwrap();
        assert!(s.sample(&flat, None, None).is_err());
        let row = Array::from_slice(&[1.0f32, 2.0], &[1, 2]).unwrap();
        assert!(s.sample(&row, None, Some(0)).is_err());
        let _ = Dtype::Float32;
    })
}

/// mlx-lm's `make_frequency_penalty` (`logits.at[:, tokens].subtract(penalty)` over the last
/// `context_size` tokens): each token loses `penalty ×` its count, worked out by hand.
#[test]
fn frequency_penalty_subtracts_per_occurrence() {
    cpu(|| {
        let logits = Array::from_slice(
            &[1.0f32, 2.0, 3.0, 4.0, 5.0, -1.0, -2.0, -3.0, -4.0, -5.0],
            &[2, 5],
        )
        .unwrap();
        let history = Array::from_slice(&[1u32, 1, 3, 0, 1], &[5]).unwrap();
        let run = |size: usize| {
            let sampler = Sampler::new(SamplingParams {
                frequency_penalty: 0.5,
                frequency_context_size: size,
                ..Default::default()
            })
            .unwrap();
            let out = sampler.process_logits(&logits, Some(&history), None);
            out.unwrap().to_vec::<f32>().unwrap()
        };
        // The last 4 tokens [1, 3, 0, 1]: token 1 twice, 0 and 3 once.
        let want = [0.5, 1.0, 3.0, 3.5, 5.0, -1.5, -3.0, -3.0, -4.5, -5.0];
        common::assert_close("context 4", &run(4), &want, 1e-6, 1e-6);
        // The whole history: token 1 three times.
        let want = [0.5, 0.5, 3.0, 3.5, 5.0, -1.5, -3.5, -3.0, -4.5, -5.0];
        common::assert_close("context 20", &run(20), &want, 1e-6, 1e-6);
        // The default leaves the logits alone.
        let sampler = Sampler::new(SamplingParams::default()).unwrap();
        let out = sampler.process_logits(&logits, Some(&history), None);
        let same = logits.to_vec::<f32>().unwrap();
        common::assert_close(
            "off",
            &out.unwrap().to_vec::<f32>().unwrap(),
            &same,
            0.0,
            0.0,
        );
    })
}
