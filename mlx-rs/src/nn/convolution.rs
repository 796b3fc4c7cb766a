//! [`Conv1d`] and [`Conv2d`]: channels-last convolutions, as MLX lays them out.
//!
//! ```
//! use mlx_rs::nn::{Conv1d, Conv2d, UnaryModule};
//! use mlx_rs::ops::ConvOptions;
//! use mlx_rs::{ops, Dtype};
//! // [batch, length, channels]
//! let conv = Conv1d::new(4, 8, 3, ConvOptions { padding: [1], ..Default::default() }, true)?;
//! let y = conv.forward(&ops::ones(&[2, 10, 4], Dtype::Float32)?)?;
//! assert_eq!(y.shape(), &[2, 10, 8]);
//! // depthwise: one filter per channel
//! let dw = Conv1d::new(4, 4, 3, ConvOptions { groups: 4, ..Default::default() }, false)?;
//! assert_eq!(dw.weight.shape(), &[4, 3, 1]);
//! // [batch, height, width, channels]
//! let conv2 = Conv2d::new(3, 6, [3, 3], ConvOptions { stride: [2, 2], ..Default::default() }, true)?;
//! assert_eq!(conv2.forward(&ops::ones(&[1, 9, 9, 3], Dtype::Float32)?)?.shape(), &[1, 4, 4, 6]);
//! assert!(conv2.forward(&ops::ones(&[1, 9, 9, 4], Dtype::Float32)?).is_err()); // 4 ≠ 3 channels
//! assert!(Conv1d::new(4, 6, 3, ConvOptions { groups: 3, ..Default::default() }, true).is_err());
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use super::module::UnaryModule;
use super::param::Param;
use crate::ops::{self, ConvOptions};
use crate::{random, Array, Error, Result};

/// Checks the sizes and options of an `N`-d convolution layer before it is made.
fn check_new<const N: usize>(
    layer: &str,
    in_channels: i32,
    out_channels: i32,
    kernel: &[i32; N],
    o: &ConvOptions<N>,
) -> Result<()> {
    let bad = |what: String| Err(Error::InvalidArgument(format!("{layer}: {what}")));
    if in_channels <= 0 || out_channels <= 0 {
        return bad(format!(
            "channels must be positive, got {in_channels} → {out_channels}"
        ));
    }
    if kernel.iter().any(|&k| k <= 0) {
        return bad(format!("the kernel size must be positive, got {kernel:?}"));
    }
    if o.stride.iter().any(|&s| s <= 0) || o.dilation.iter().any(|&d| d <= 0) {
        return bad(format!(
            "stride and dilation must be positive, got {:?} and {:?}",
            o.stride, o.dilation
        ));
    }
    if o.padding.iter().any(|&p| p < 0) {
        return bad(format!("padding must not be negative, got {:?}", o.padding));
    }
    if o.groups <= 0 || in_channels % o.groups != 0 || out_channels % o.groups != 0 {
        return bad(format!(
            "groups ({}) must be positive and divide both the input channels \
             ({in_channels}) and the output channels ({out_channels})",
            o.groups
        ));
    }
    Ok(())
}

/// Checks an input of an `N`-d convolution: `[batch, ..N spatial, in_channels]`.
fn check_input(layer: &str, x: &Array, spatial: usize, in_channels: i32) -> Result<()> {
    if x.ndim() != spatial + 2 || x.shape().last() != Some(&in_channels) {
        let layout = if spatial == 1 {
            "[batch, length, channels]"
        } else {
            "[batch, height, width, channels]"
        };
        return Err(Error::Shape(format!(
            "{layer}: the input must be {layout} with {in_channels} channels, got shape {:?}",
            x.shape()
        )));
    }
    Ok(())
}

/// The weight shape `[out, ..kernel, in / groups]` and Python's uniform initialisation
/// bound √(1 / (in · ∏kernel)).
fn init_weight(in_channels: i32, out_channels: i32, kernel: &[i32], groups: i32) -> Result<Array> {
    let fan_in = in_channels as f64 * kernel.iter().map(|&k| k as f64).product::<f64>();
    let scale = (1.0 / fan_in).sqrt() as f32;
    let mut shape = vec![out_channels];
    shape.extend_from_slice(kernel);
    shape.push(in_channels / groups);
    random::uniform_range(-scale..scale, &shape, None)
}

/// The checked, initialised weight and optional zero bias of a new convolution.
fn new_parts<const N: usize>(
    layer: &str,
    in_channels: i32,
    out_channels: i32,
    kernel: &[i32; N],
    options: &ConvOptions<N>,
    bias: bool,
) -> Result<(Param, Option<Param>)> {
    check_new(layer, in_channels, out_channels, kernel, options)?;
    let weight = Param::new(init_weight(
        in_channels,
        out_channels,
        kernel,
        options.groups,
    )?);
    let bias = if bias {
        Some(Param::new(ops::zeros(
            &[out_channels],
            crate::Dtype::Float32,
        )?))
    } else {
        None
    };
    Ok((weight, bias))
}

fn add_bias(y: Array, bias: Option<&Param>) -> Result<Array> {
    match bias {
        Some(b) => y.add(b),
        None => Ok(y),
    }
}

/// A 1-D convolution over `[batch, length, in_channels]` inputs (Python's
/// `mlx.nn.Conv1d`): weight `[out_channels, kernel_size, in_channels / groups]`, optional
/// bias `[out_channels]`; stride, padding, dilation and groups as [`ConvOptions`].
#[derive(Debug, Clone, super::Module)]
pub struct Conv1d {
    /// `[out_channels, kernel_size, in_channels / groups]`.
    pub weight: Param,
    /// `[out_channels]`, if the layer has a bias.
    pub bias: Option<Param>,
    /// Stride, padding, dilation, groups.
    #[module(skip)]
    pub options: ConvOptions<1>,
}

impl Conv1d {
    /// A randomly initialised layer (float32; uniform in ±√(1/(in_channels · kernel_size)),
    /// bias zeros, as in Python).
    pub fn new(
        in_channels: i32,
        out_channels: i32,
        kernel_size: i32,
        options: ConvOptions<1>,
        bias: bool,
    ) -> Result<Conv1d> {
        let (weight, bias) = new_parts(
            "Conv1d",
            in_channels,
            out_channels,
            &[kernel_size],
            &options,
            bias,
        )?;
        Ok(Conv1d {
            weight,
            bias,
            options,
        })
    }

    /// The number of input channels.
    pub fn in_channels(&self) -> i32 {
        self.weight.shape()[2] * self.options.groups
    }
}

impl UnaryModule for Conv1d {
    fn forward(&self, x: &Array) -> Result<Array> {
        check_input("Conv1d", x, 1, self.in_channels())?;
        add_bias(
            ops::conv1d(x, &self.weight, self.options)?,
            self.bias.as_ref(),
        )
    }
}

/// A 2-D convolution over `[batch, height, width, in_channels]` inputs (Python's
/// `mlx.nn.Conv2d`): weight `[out_channels, kh, kw, in_channels / groups]`, optional bias
/// `[out_channels]`; stride, padding, dilation and groups as [`ConvOptions`].
#[derive(Debug, Clone, super::Module)]
pub struct Conv2d {
    /// `[out_channels, kh, kw, in_channels / groups]`.
    pub weight: Param,
    /// `[out_channels]`, if the layer has a bias.
    pub bias: Option<Param>,
    /// Stride, padding, dilation, groups.
    #[module(skip)]
    pub options: ConvOptions<2>,
}

impl Conv2d {
    /// A randomly initialised layer (float32; uniform in ±√(1/(in_channels · kh · kw)), bias
    /// zeros, as in Python).
    pub fn new(
        in_channels: i32,
        out_channels: i32,
        kernel_size: [i32; 2],
        options: ConvOptions<2>,
        bias: bool,
    ) -> Result<Conv2d> {
        let (weight, bias) = new_parts(
            "Conv2d",
            in_channels,
            out_channels,
            &kernel_size,
            &options,
            bias,
        )?;
        Ok(Conv2d {
            weight,
            bias,
            options,
        })
    }

    /// The number of input channels.
    pub fn in_channels(&self) -> i32 {
        self.weight.shape()[3] * self.options.groups
    }
}

impl UnaryModule for Conv2d {
    fn forward(&self, x: &Array) -> Result<Array> {
        check_input("Conv2d", x, 2, self.in_channels())?;
        add_bias(
            ops::conv2d(x, &self.weight, self.options)?,
            self.bias.as_ref(),
        )
    }
}
