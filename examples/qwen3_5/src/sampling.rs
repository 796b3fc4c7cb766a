//! Sampling: greedy, temperature, top-k, top-p, min-p, repetition and presence penalties, seeds.
