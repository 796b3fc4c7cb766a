//! Learning-rate schedules: [`Schedule`] and the functions that make one, as Python's
//! `mlx.optimizers` schedulers.

use crate::{ops, Array, Dtype, Error, Result};
use std::fmt;
use std::sync::Arc;

/// A value that changes with the step count (a learning rate, usually), computed with
/// MLX ops on the step array so that it can run inside a compiled training step.
///
/// Make one with [`cosine_decay`], [`linear_schedule`], [`step_decay`],
/// [`exponential_decay`], [`join_schedules`] or [`Schedule::from_fn`]; evaluate it with
/// [`Schedule::at`] (an array in, a `float32` scalar out) or [`Schedule::value`]. An
/// optimizer given a schedule evaluates it at the current step before each update, so
/// the first update uses the value at step 0.
///
/// ```
/// use mlx_rs::optimizers::{cosine_decay, join_schedules, linear_schedule};
/// let warmup = linear_schedule(0.0, 1e-1, 10)?;
/// let cosine = cosine_decay(1e-1, 200, 0.0)?;
/// let lr = join_schedules(vec![warmup, cosine], &[10])?;
/// assert_eq!(lr.value(0)?, 0.0);
/// assert!((lr.value(5)? - 0.05).abs() < 1e-7);
/// assert!((lr.value(11)? - 0.0999938).abs() < 1e-6); // one step into the cosine
/// assert!(linear_schedule(0.0, 1.0, 0).is_err()); // zero steps
/// # Ok::<(), mlx_rs::Error>(())
/// ```
#[derive(Clone)]
pub struct Schedule(Kind);

type ScheduleFn = dyn Fn(&Array) -> Result<Array> + Send + Sync;

#[derive(Clone)]
enum Kind {
    Exponential {
        init: f64,
        rate: f64,
    },
    Step {
        init: f64,
        rate: f64,
        step_size: u64,
    },
    Cosine {
        init: f64,
        decay_steps: u64,
        end: f64,
    },
    Linear {
        init: f64,
        end: f64,
        steps: u64,
    },
    Join {
        parts: Vec<Schedule>,
        boundaries: Vec<u64>,
    },
    Custom(Arc<ScheduleFn>),
}

impl Schedule {
    /// A schedule computed by `f` from the step array (a `uint64` scalar when an
    /// optimizer calls it). `f` should use MLX ops only (no reading of values), so that
    /// it compiles; an optimizer cannot check that its values are not negative.
    pub fn from_fn(f: impl Fn(&Array) -> Result<Array> + Send + Sync + 'static) -> Schedule {
        Schedule(Kind::Custom(Arc::new(f)))
    }

    /// The value at `step` (an integer scalar array), computed with MLX ops: lazy and
    /// compilable.
    pub fn at(&self, step: &Array) -> Result<Array> {
        match &self.0 {
            Kind::Exponential { init, rate } => {
                power(*rate, &step.astype(Dtype::Float32)?)?.multiply_scalar(*init)
            }
            Kind::Step {
                init,
                rate,
                step_size,
            } => {
                let k = step.floor_divide(&like(*step_size, step)?)?;
                power(*rate, &k.astype(Dtype::Float32)?)?.multiply_scalar(*init)
            }
            Kind::Cosine {
                init,
                decay_steps,
                end,
            } => {
                let s = step.minimum(&like(*decay_steps, step)?)?;
                let angle = s
                    .astype(Dtype::Float32)?
                    .multiply_scalar(std::f64::consts::PI / *decay_steps as f64)?;
                let decay = angle.cos()?.add_scalar(1.0)?.multiply_scalar(0.5)?;
                decay.multiply_scalar(init - end)?.add_scalar(*end)
            }
            Kind::Linear { init, end, steps } => {
                let s = step.minimum(&like(*steps, step)?)?;
                s.astype(Dtype::Float32)?
                    .multiply_scalar((end - init) / *steps as f64)?
                    .add_scalar(*init)
            }
            Kind::Join { parts, boundaries } => {
                let mut out = parts[0].at(step)?;
                for (b, part) in boundaries.iter().zip(&parts[1..]) {
                    let b = like(*b, step)?;
                    // As in Python, the later part is computed for every step (an unsigned
                    // step below the boundary wraps around) and masked.
                    let later = part.at(&step.subtract(&b)?)?;
                    out = ops::r#where(&step.less(&b)?, &out, &later)?;
                }
                Ok(out)
            }
            Kind::Custom(f) => f(step),
        }
    }

    /// The value at `step`, evaluated.
    pub fn value(&self, step: u64) -> Result<f32> {
        self.at(&Array::scalar(step))?
            .astype(Dtype::Float32)?
            .item::<f32>()
    }

    /// Whether some step could give a negative value (unknown for [`Schedule::from_fn`]:
    /// `false`).
    pub(crate) fn may_be_negative(&self) -> bool {
        match &self.0 {
            Kind::Exponential { init, rate } | Kind::Step { init, rate, .. } => {
                *init < 0.0 || (*rate < 0.0 && *init != 0.0)
            }
            Kind::Cosine { init, end, .. } | Kind::Linear { init, end, .. } => {
                *init < 0.0 || *end < 0.0
            }
            Kind::Join { parts, .. } => parts.iter().any(Schedule::may_be_negative),
            Kind::Custom(_) => false,
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Exponential { init, rate } => write!(f, "exponential_decay({init}, {rate})"),
            Kind::Step {
                init,
                rate,
                step_size,
            } => write!(f, "step_decay({init}, {rate}, {step_size})"),
            Kind::Cosine {
                init,
                decay_steps,
                end,
            } => write!(f, "cosine_decay({init}, {decay_steps}, {end})"),
            Kind::Linear { init, end, steps } => {
                write!(f, "linear_schedule({init}, {end}, {steps})")
            }
            Kind::Join { parts, boundaries } => {
                write!(f, "join_schedules({parts:?}, {boundaries:?})")
            }
            Kind::Custom(_) => write!(f, "Schedule::from_fn(..)"),
        }
    }
}

/// `base ** exponent` with a `float32` base, as Python's `float ** array`.
fn power(base: f64, exponent: &Array) -> Result<Array> {
    Array::scalar(base as f32).power(exponent)
}

/// `n` as a scalar of `step`'s dtype (a weakly typed Python int).
fn like(n: u64, step: &Array) -> Result<Array> {
    Array::scalar(n).astype(step.dtype())
}

fn finite(what: &str, name: &str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{what}: `{name}` must be finite, got {v}"
        )))
    }
}

fn positive(what: &str, name: &str, n: u64) -> Result<()> {
    if n == 0 {
        Err(Error::InvalidArgument(format!(
            "{what}: `{name}` must be at least 1, got 0"
        )))
    } else {
        Ok(())
    }
}

/// `init * decay_rate^step`: Python's `mlx.optimizers.exponential_decay`.
///
/// ```
/// let lr = mlx_rs::optimizers::exponential_decay(0.1, 0.9)?;
/// assert!((lr.value(5)? - 0.059049).abs() < 1e-7);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn exponential_decay(init: f64, decay_rate: f64) -> Result<Schedule> {
    finite("exponential_decay", "init", init)?;
    finite("exponential_decay", "decay_rate", decay_rate)?;
    Ok(Schedule(Kind::Exponential {
        init,
        rate: decay_rate,
    }))
}

/// `init * decay_rate^(step / step_size)` (integer division: the value drops every
/// `step_size` steps): Python's `mlx.optimizers.step_decay`. `step_size` ≥ 1.
///
/// ```
/// let lr = mlx_rs::optimizers::step_decay(0.1, 0.9, 10)?;
/// assert_eq!(lr.value(9)?, 0.1);
/// assert!((lr.value(21)? - 0.081).abs() < 1e-7);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn step_decay(init: f64, decay_rate: f64, step_size: u64) -> Result<Schedule> {
    finite("step_decay", "init", init)?;
    finite("step_decay", "decay_rate", decay_rate)?;
    positive("step_decay", "step_size", step_size)?;
    Ok(Schedule(Kind::Step {
        init,
        rate: decay_rate,
        step_size,
    }))
}

/// From `init` down to `end` along half a cosine over `decay_steps` steps, then `end`:
/// Python's `mlx.optimizers.cosine_decay`. `decay_steps` ≥ 1.
///
/// ```
/// let lr = mlx_rs::optimizers::cosine_decay(0.1, 1000, 0.0)?;
/// assert!((lr.value(5)? - 0.0999938).abs() < 1e-6);
/// assert_eq!(lr.value(2000)?, 0.0);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn cosine_decay(init: f64, decay_steps: u64, end: f64) -> Result<Schedule> {
    finite("cosine_decay", "init", init)?;
    finite("cosine_decay", "end", end)?;
    positive("cosine_decay", "decay_steps", decay_steps)?;
    Ok(Schedule(Kind::Cosine {
        init,
        decay_steps,
        end,
    }))
}

/// From `init` to `end` in a straight line over `steps` steps, then `end` (a warmup):
/// Python's `mlx.optimizers.linear_schedule`. `steps` ≥ 1.
///
/// ```
/// let lr = mlx_rs::optimizers::linear_schedule(0.0, 0.1, 100)?;
/// assert_eq!(lr.value(0)?, 0.0);
/// assert_eq!(lr.value(101)?, 0.1);
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn linear_schedule(init: f64, end: f64, steps: u64) -> Result<Schedule> {
    finite("linear_schedule", "init", init)?;
    finite("linear_schedule", "end", end)?;
    positive("linear_schedule", "steps", steps)?;
    Ok(Schedule(Kind::Linear { init, end, steps }))
}

/// `schedules[0]` until `boundaries[0]`, then `schedules[1]` (given the steps since that
/// boundary), and so on: Python's `mlx.optimizers.join_schedules`. There must be one
/// boundary fewer than schedules.
///
/// ```
/// use mlx_rs::optimizers::{exponential_decay, join_schedules, linear_schedule};
/// let lr = join_schedules(vec![linear_schedule(0.0, 1.0, 4)?, exponential_decay(1.0, 0.5)?], &[4])?;
/// assert_eq!(lr.value(2)?, 0.5);
/// assert_eq!(lr.value(6)?, 0.25);
/// assert!(join_schedules(vec![exponential_decay(1.0, 0.5)?], &[4]).is_err());
/// # Ok::<(), mlx_rs::Error>(())
/// ```
pub fn join_schedules(schedules: Vec<Schedule>, boundaries: &[u64]) -> Result<Schedule> {
    if schedules.is_empty() {
        return Err(Error::InvalidArgument(
            "join_schedules: at least one schedule is needed".into(),
        ));
    }
    if boundaries.len() + 1 != schedules.len() {
        return Err(Error::InvalidArgument(format!(
            "join_schedules: {} schedules need {} boundaries, got {}",
            schedules.len(),
            schedules.len() - 1,
            boundaries.len()
        )));
    }
    Ok(Schedule(Kind::Join {
        parts: schedules,
        boundaries: boundaries.to_vec(),
    }))
}
