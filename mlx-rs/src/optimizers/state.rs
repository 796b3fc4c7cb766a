//! What every optimizer of this module keeps: the step counter, the learning rate (a
//! constant or a [`Schedule`]) and per-parameter arrays, and the checked, all-or-nothing
//! update that applies one optimizer's rule to every parameter.

use super::schedules::Schedule;
use super::LearningRate;
use crate::nn::ParamMap;
use crate::{ops, Array, Dtype, Error, Result};
use std::collections::BTreeMap;

/// The state shared by the optimizers: Python's `Optimizer.state` as arrays.
#[derive(Debug, Clone)]
pub(crate) struct Core {
    /// Which optimizer, for error messages.
    name: &'static str,
    /// The number of updates applied (`uint64` scalar).
    step: Array,
    /// The learning rate of the last update (or the first, before any): `float32` scalar.
    learning_rate: Array,
    schedule: Option<Schedule>,
    /// The names of the arrays kept per parameter (`m`, `v`), in the order the rule
    /// receives them.
    slot_names: &'static [&'static str],
    /// Per parameter, its arrays (created at the first update that sees the parameter).
    slots: BTreeMap<String, Vec<Array>>,
}

/// What a rule gets besides the gradient and parameter: the learning rate (already in
/// the gradient's dtype) and the step count after this update (`uint64`; 1 at the first).
pub(crate) struct StepInfo<'a> {
    pub learning_rate: &'a Array,
    pub step: &'a Array,
}

impl Core {
    /// A fresh state (step 0); the learning rate is checked not to be negative.
    pub fn new(
        name: &'static str,
        learning_rate: LearningRate,
        slot_names: &'static [&'static str],
    ) -> Result<Core> {
        let step = Array::scalar(0u64);
        let (learning_rate, schedule) = match learning_rate {
            LearningRate::Constant(lr) => {
                check_non_negative(name, "learning rate", lr)?;
                (Array::scalar(lr as f32), None)
            }
            LearningRate::Schedule(s) => {
                if s.may_be_negative() {
                    return Err(Error::InvalidArgument(format!(
                        "{name}: the learning-rate schedule can take negative values"
                    )));
                }
                (s.at(&step)?, Some(s))
            }
        };
        Ok(Core {
            name,
            step,
            learning_rate,
            schedule,
            slot_names,
            slots: BTreeMap::new(),
        })
    }

    /// Creates zeroed arrays for every parameter that has none yet.
    pub fn init(&mut self, params: &ParamMap) -> Result<()> {
        let mut fresh = Vec::new();
        for (k, p) in params {
            if !self.slots.contains_key(k) {
                fresh.push((k.clone(), self.zeros(p)?));
            }
        }
        self.slots.extend(fresh);
        Ok(())
    }

    fn zeros(&self, like: &Array) -> Result<Vec<Array>> {
        self.slot_names
            .iter()
            .map(|_| ops::zeros_like(like))
            .collect()
    }

    /// Checks `grads` against `params` and the kept arrays, then applies `rule` to every
    /// parameter; the state changes only if every parameter was updated.
    pub fn apply(
        &mut self,
        grads: &ParamMap,
        params: &ParamMap,
        mut rule: impl FnMut(&Array, &Array, &mut [Array], &StepInfo) -> Result<Array>,
    ) -> Result<ParamMap> {
        self.check(grads, params)?;
        let learning_rate = match &self.schedule {
            Some(s) => s.at(&self.step)?,
            None => self.learning_rate.clone(),
        };
        let step = self.step.add_scalar(1)?;
        let mut new_params = ParamMap::new();
        let mut new_slots = BTreeMap::new();
        for (k, g) in grads {
            let p = &params[k];
            let mut slots = match self.slots.get(k) {
                Some(s) => s.clone(),
                None => self.zeros(p)?,
            };
            let lr = if learning_rate.dtype() == g.dtype() {
                learning_rate.clone()
            } else {
                learning_rate.astype(g.dtype())?
            };
            let info = StepInfo {
                learning_rate: &lr,
                step: &step,
            };
            new_params.insert(k.clone(), rule(g, p, &mut slots, &info)?);
            new_slots.insert(k.clone(), slots);
        }
        self.slots.extend(new_slots);
        self.step = step;
        self.learning_rate = learning_rate;
        Ok(new_params)
    }

    /// Every gradient names a parameter of its shape and dtype, every parameter has a
    /// gradient, and kept arrays have the shape and dtype of their parameter.
    fn check(&self, grads: &ParamMap, params: &ParamMap) -> Result<()> {
        let name = self.name;
        if let Some(k) = grads.keys().find(|k| !params.contains_key(*k)) {
            return Err(Error::InvalidArgument(format!(
                "{name}: there is a gradient for `{k}`, which is not one of the parameters \
                 being updated (frozen, or not in the model?)"
            )));
        }
        if let Some(k) = params.keys().find(|k| !grads.contains_key(*k)) {
            return Err(Error::InvalidArgument(format!(
                "{name}: parameter `{k}` has no gradient"
            )));
        }
        for (k, g) in grads {
            let p = &params[k];
            if g.shape() != p.shape() || g.dtype() != p.dtype() {
                return Err(Error::Shape(format!(
                    "{name}: the gradient of `{k}` is {:?} {:?}, but the parameter is {:?} {:?}",
                    g.dtype(),
                    g.shape(),
                    p.dtype(),
                    p.shape()
                )));
            }
            for (s, slot) in self
                .slot_names
                .iter()
                .zip(self.slots.get(k).into_iter().flatten())
            {
                if slot.shape() != p.shape() || slot.dtype() != p.dtype() {
                    return Err(Error::Shape(format!(
                        "{name}: state `{k}.{s}` is {:?} {:?}, but the parameter is {:?} {:?}",
                        slot.dtype(),
                        slot.shape(),
                        p.dtype(),
                        p.shape()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The state as flat arrays: `step`, `learning_rate`, `<param>.<slot>`.
    pub fn state(&self) -> ParamMap {
        let mut out = ParamMap::new();
        out.insert("step".into(), self.step.clone());
        out.insert("learning_rate".into(), self.learning_rate.clone());
        for (k, slots) in &self.slots {
            for (s, a) in self.slot_names.iter().zip(slots) {
                out.insert(format!("{k}.{s}"), a.clone());
            }
        }
        out
    }

    /// Replaces the state by `state` (as [`Core::state`] returns it); checked first, so
    /// nothing changes on error.
    pub fn set_state(&mut self, state: &ParamMap) -> Result<()> {
        let name = self.name;
        let scalar = |key: &str| -> Result<&Array> {
            let a = state.get(key).ok_or_else(|| {
                Error::InvalidArgument(format!("{name}: the state has no `{key}`"))
            })?;
            if a.ndim() != 0 {
                return Err(Error::Shape(format!(
                    "{name}: state `{key}` must be a scalar, got shape {:?}",
                    a.shape()
                )));
            }
            Ok(a)
        };
        let step = scalar("step")?;
        if !step.dtype().is_integer() {
            return Err(Error::InvalidArgument(format!(
                "{name}: state `step` must be an integer, got {:?}",
                step.dtype()
            )));
        }
        let learning_rate = scalar("learning_rate")?;
        if !learning_rate.dtype().is_float() {
            return Err(Error::InvalidArgument(format!(
                "{name}: state `learning_rate` must be floating-point, got {:?}",
                learning_rate.dtype()
            )));
        }
        let mut slots: BTreeMap<String, Vec<Option<Array>>> = BTreeMap::new();
        for (key, a) in state {
            if key == "step" || key == "learning_rate" {
                continue;
            }
            let found = key.rsplit_once('.').and_then(|(param, slot)| {
                let i = self.slot_names.iter().position(|s| *s == slot)?;
                Some((param, i))
            });
            let Some((param, i)) = found else {
                return Err(Error::InvalidArgument(format!(
                    "{name}: `{key}` is not part of the state (keys are `step`, \
                     `learning_rate` and `<parameter>.{{{}}}`)",
                    self.slot_names.join(",")
                )));
            };
            slots
                .entry(param.to_string())
                .or_insert_with(|| vec![None; self.slot_names.len()])[i] = Some(a.clone());
        }
        let mut complete = BTreeMap::new();
        for (param, arrays) in slots {
            let arrays = arrays
                .into_iter()
                .zip(self.slot_names)
                .map(|(a, s)| {
                    a.ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "{name}: the state has no `{param}.{s}` (it has other arrays of \
                             `{param}`)"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            complete.insert(param, arrays);
        }
        self.step = if step.dtype() == Dtype::Uint64 {
            step.clone()
        } else {
            step.astype(Dtype::Uint64)?
        };
        self.learning_rate = learning_rate.clone();
        self.slots = complete;
        Ok(())
    }
}

/// `value` must be finite and ≥ 0.
pub(crate) fn check_non_negative(optimizer: &str, what: &str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{optimizer}: the {what} must be finite and ≥ 0, got {value}"
        )))
    }
}

/// Each beta must lie in [0, 1).
pub(crate) fn check_betas(optimizer: &str, betas: (f64, f64)) -> Result<()> {
    for (i, b) in [betas.0, betas.1].into_iter().enumerate() {
        if !(0.0..1.0).contains(&b) {
            return Err(Error::InvalidArgument(format!(
                "{optimizer}: beta{} must be in [0, 1), got {b}",
                i + 1
            )));
        }
    }
    Ok(())
}

/// `beta * a + (1 - beta) * b` (a running average), as Python computes it.
pub(crate) fn blend(a: &Array, b: &Array, beta: f64) -> Result<Array> {
    a.multiply_scalar(beta)?
        .add(&b.multiply_scalar(1.0 - beta)?)
}

/// `1 - x` for a scalar array.
pub(crate) fn one_minus(x: &Array) -> Result<Array> {
    x.negative()?.add_scalar(1.0)
}
