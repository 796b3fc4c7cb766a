//! Element-wise math: exponentials, logs, trigonometry, rounding, special functions.
