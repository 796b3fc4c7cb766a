//! Random number generation with explicit or global keys.
