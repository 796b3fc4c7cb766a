//! Fast Fourier transforms: complex (`fft*`, `ifft*`), real (`rfft*`, `irfft*`), sample
//! frequencies and shifts, following NumPy's `numpy.fft`.
//!
//! Sizes `n` are optional: `None` transforms the whole axis (for the inverse real
//! transforms, `2 * (m - 1)` where `m` is the input size along the last transformed
//! axis). A given `n` crops or zero-pads the input along that axis.
//!
//! ```
//! use mlx_rs::{fft::{self, FftNorm}, Array, Complex32};
//! let x = Array::from_slice(&[1.0f32, 0.0, 0.0, 0.0], &[4])?;
//! let y = fft::fft(&x, None, -1, FftNorm::Backward)?;
//! assert_eq!(y.to_vec::<Complex32>()?, vec![Complex32::new(1.0, 0.0); 4]);
//! # Ok::<(), mlx_rs::Error>(())
//! ```

use crate::raw::stream_op;
use crate::{Array, Error, Result};
use mlx_sys as sys;

/// Scaling of a transform pair, as in NumPy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FftNorm {
    /// No scaling forward, `1/n` on the inverse (the default).
    #[default]
    Backward,
    /// `1/sqrt(n)` both ways.
    Ortho,
    /// `1/n` forward, none on the inverse.
    Forward,
}

impl FftNorm {
    fn to_raw(self) -> sys::mlx_fft_norm {
        match self {
            FftNorm::Backward => sys::MLX_FFT_NORM_BACKWARD,
            FftNorm::Ortho => sys::MLX_FFT_NORM_ORTHO,
            FftNorm::Forward => sys::MLX_FFT_NORM_FORWARD,
        }
    }
}

/// Which family a transform belongs to, for the default output size.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Output size = input size.
    Same,
    /// Inverse real transform: the last axis grows back to `2 * (m - 1)`.
    InverseReal,
}

/// Size of `a` along `axis` (negative counts from the end), or an error naming `op`.
fn axis_size(op: &str, a: &Array, axis: i32) -> Result<i32> {
    let nd = a.ndim() as i32;
    let ax = if axis < 0 { axis + nd } else { axis };
    if ax < 0 || ax >= nd {
        return Err(Error::InvalidArgument(format!(
            "[{op}] invalid axis {axis} for an array of {nd} dimensions"
        )));
    }
    Ok(a.shape()[ax as usize])
}

/// The default 1-D size: the axis length (or `2 * (m - 1)` for inverse real).
fn default_n(op: &str, a: &Array, n: Option<i32>, axis: i32, kind: Kind) -> Result<i32> {
    match n {
        Some(n) => Ok(n),
        None => {
            let m = axis_size(op, a, axis)?;
            Ok(if kind == Kind::InverseReal {
                2 * (m - 1)
            } else {
                m
            })
        }
    }
}

/// Resolves optional sizes and axes like NumPy: axes default to `default_axes`, or
/// (when only sizes are given) to the last `n.len()` axes, or to all axes.
fn resolve(
    op: &str,
    a: &Array,
    n: Option<&[i32]>,
    axes: Option<&[i32]>,
    default_axes: Option<&[i32]>,
    kind: Kind,
) -> Result<(Vec<i32>, Vec<i32>)> {
    let nd = a.ndim() as i32;
    let axes: Vec<i32> = match (axes, n, default_axes) {
        (Some(ax), _, _) => ax.to_vec(),
        (None, _, Some(d)) => d.to_vec(),
        (None, Some(n), None) => (-(n.len() as i32)..0).collect(),
        (None, None, None) => (0..nd).collect(),
    };
    let n = match n {
        Some(n) => n.to_vec(),
        None => {
            let mut sizes = axes
                .iter()
                .map(|&ax| axis_size(op, a, ax))
                .collect::<Result<Vec<i32>>>()?;
            if kind == Kind::InverseReal {
                if let Some(last) = sizes.last_mut() {
                    *last = 2 * (*last - 1);
                }
            }
            sizes
        }
    };
    Ok((n, axes))
}

/// One-dimensional discrete Fourier transform along `axis` (complex output).
///
/// `n`: output size along `axis` (`None`: see the module docs).
#[track_caller]
pub fn fft(a: &Array, n: Option<i32>, axis: i32, norm: FftNorm) -> Result<Array> {
    let n = default_n("fft", a, n, axis, Kind::Same)?;
    stream_op(|res, s| unsafe { sys::mlx_fft_fft(res, a.as_raw(), n, axis, norm.to_raw(), s) })
}

/// Inverse of [`fft`] along `axis`.
///
/// `n`: output size along `axis` (`None`: see the module docs).
#[track_caller]
pub fn ifft(a: &Array, n: Option<i32>, axis: i32, norm: FftNorm) -> Result<Array> {
    let n = default_n("ifft", a, n, axis, Kind::Same)?;
    stream_op(|res, s| unsafe { sys::mlx_fft_ifft(res, a.as_raw(), n, axis, norm.to_raw(), s) })
}

/// Fourier transform of a real input along `axis`: the `n / 2 + 1` non-negative
/// frequency terms.
///
/// `n`: output size along `axis` (`None`: see the module docs).
#[track_caller]
pub fn rfft(a: &Array, n: Option<i32>, axis: i32, norm: FftNorm) -> Result<Array> {
    let n = default_n("rfft", a, n, axis, Kind::Same)?;
    stream_op(|res, s| unsafe { sys::mlx_fft_rfft(res, a.as_raw(), n, axis, norm.to_raw(), s) })
}

/// Inverse of [`rfft`]: a real output of size `n` along `axis`.
///
/// `n`: output size along `axis` (`None`: see the module docs).
#[track_caller]
pub fn irfft(a: &Array, n: Option<i32>, axis: i32, norm: FftNorm) -> Result<Array> {
    let n = default_n("irfft", a, n, axis, Kind::InverseReal)?;
    stream_op(|res, s| unsafe { sys::mlx_fft_irfft(res, a.as_raw(), n, axis, norm.to_raw(), s) })
}

const LAST_TWO: Option<&[i32]> = Some(&[-2, -1]);

/// Two-dimensional Fourier transform (default axes: the last two).
///
/// `n`: output sizes along `axes` (`None`: see the module docs); `axes`: the
/// transformed axes (`None`: the default above).
#[track_caller]
pub fn fft2(a: &Array, n: Option<&[i32]>, axes: Option<&[i32]>, norm: FftNorm) -> Result<Array> {
    let (n, axes) = resolve("fft2", a, n, axes, LAST_TWO, Kind::Same)?;
    stream_op(|res, s| unsafe {
        sys::mlx_fft_fft2(
            res,
            a.as_raw(),
            n.as_ptr(),
            n.len(),
            axes.as_ptr(),
            axes.len(),
            norm.to_raw(),
            s,
        )
    })
}

/// Inverse of [`fft2`] (default axes: the last two).
///
/// `n`: output sizes along `axes` (`None`: see the module docs); `axes`: the
/// transformed axes (`None`: the default above).
#[track_caller]
pub fn ifft2(a: &Array, n: Option<&[i32]>, axes: Option<&[i32]>, norm: FftNorm) -> Result<Array> {
    let (n, axes) = resolve("ifft2", a, n, axes, LAST_TWO, Kind::Same)?;
    stream_op(|res, s| unsafe {
        sys::mlx_fft_ifft2(
            res,
            a.as_raw(),
            n.as_ptr(),
            n.len(),
            axes.as_ptr(),
            axes.len(),
            norm.to_raw(),
            s,
        )
    })
}

/// Two-dimensional real Fourier transform (default axes: the last two).
///
/// `n`: output sizes along `axes` (`None`: see the module docs); `axes`: the
/// transformed axes (`None`: the default above).
#[track_caller]
pub fn rfft2(a: &Array, n: Option<&[i32]>, axes: Option<&[i32]>, norm: FftNorm) -> Result<Array> {
    let (n, axes) = resolve("rfft2", a, n, axes, LAST_TWO, Kind::Same)?;
    stream_op(|res, s| unsafe {
        sys::mlx_fft_rfft2(
            res,
            a.as_raw(),
            n.as_ptr(),
            n.len(),
            axes.as_ptr(),
            axes.len(),
            norm.to_raw(),
            s,
        )
    })
}

/// Inverse of [`rfft2`] (default axes: the last two).
///
/// `n`: output sizes along `axes` (`None`: see the module docs); `axes`: the
/// transformed axes (`None`: the default above).
#[track_caller]
pub fn irfft2(a: &Array, n: Option<&[i32]>, axes: Option<&[i32]>, norm: FftNorm) -> Result<Array> {
    let (n, axes) = resolve("irfft2", a, n, axes, LAST_TWO, Kind::InverseReal)?;
    stream_op(|res, s| unsafe {
        sys::mlx_fft_irfft2(
            res,
            a.as_raw(),
            n.as_ptr(),
            n.len(),
            axes.as_ptr(),
            axes.len(),
            norm.to_raw(),
            s,
        )
    })
}

/// N-dimensional Fourier transform (default axes: all, or the last `n.len()`).
///
/// `n`: output sizes along `axes` (`None`: see the module docs); `axes`: the
/// transformed axes (`None`: the default above).
#[track_caller]
pub fn fftn(a: &Array, n: Option<&[i32]>, axes: Option<&[i32]>, norm: FftNorm) -> Result<Array> {
    let (n, axes) = resolve("fftn", a, n, axes, None, Kind::Same)?;
    stream_op(|res, s| unsafe {
        sys::mlx_fft_fftn(
            res,
            a.as_raw(),
            n.as_ptr(),
            n.len(),
            axes.as_ptr(),
            axes.len(),
            norm.to_raw(),
            s,
        )
    })
}

/// Inverse of [`fftn`] (default axes: all, or the last `n.len()`).
///
/// `n`: output sizes along `axes` (`None`: see the module docs); `axes`: the
/// transformed axes (`None`: the default above).
#[track_caller]
pub fn ifftn(a: &Array, n: Option<&[i32]>, axes: Option<&[i32]>, norm: FftNorm) -> Result<Array> {
    let (n, axes) = resolve("ifftn", a, n, axes, None, Kind::Same)?;
    stream_op(|res, s| unsafe {
        sys::mlx_fft_ifftn(
            res,
            a.as_raw(),
            n.as_ptr(),
            n.len(),
            axes.as_ptr(),
            axes.len(),
            norm.to_raw(),
            s,
        )
    })
}

/// N-dimensional real Fourier transform (default axes: all, or the last `n.len()`).
///
/// `n`: output sizes along `axes` (`None`: see the module docs); `axes`: the
/// transformed axes (`None`: the default above).
#[track_caller]
pub fn rfftn(a: &Array, n: Option<&[i32]>, axes: Option<&[i32]>, norm: FftNorm) -> Result<Array> {
    let (n, axes) = resolve("rfftn", a, n, axes, None, Kind::Same)?;
    stream_op(|res, s| unsafe {
        sys::mlx_fft_rfftn(
            res,
            a.as_raw(),
            n.as_ptr(),
            n.len(),
            axes.as_ptr(),
            axes.len(),
            norm.to_raw(),
            s,
        )
    })
}

/// Inverse of [`rfftn`] (default axes: all, or the last `n.len()`).
///
/// `n`: output sizes along `axes` (`None`: see the module docs); `axes`: the
/// transformed axes (`None`: the default above).
#[track_caller]
pub fn irfftn(a: &Array, n: Option<&[i32]>, axes: Option<&[i32]>, norm: FftNorm) -> Result<Array> {
    let (n, axes) = resolve("irfftn", a, n, axes, None, Kind::InverseReal)?;
    stream_op(|res, s| unsafe {
        sys::mlx_fft_irfftn(
            res,
            a.as_raw(),
            n.as_ptr(),
            n.len(),
            axes.as_ptr(),
            axes.len(),
            norm.to_raw(),
            s,
        )
    })
}

/// The sample frequencies of an `n`-point [`fft`] with sample spacing `d`
/// (`[0, 1, …, n/2 - 1, -n/2, …, -1] / (d * n)`).
#[track_caller]
pub fn fftfreq(n: i32, d: f64) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_fft_fftfreq(res, n, d, s) })
}

/// The sample frequencies of an `n`-point [`rfft`] with sample spacing `d`
/// (`[0, 1, …, n/2] / (d * n)`).
#[track_caller]
pub fn rfftfreq(n: i32, d: f64) -> Result<Array> {
    stream_op(|res, s| unsafe { sys::mlx_fft_rfftfreq(res, n, d, s) })
}

/// All axes of `a` when `axes` is `None`.
fn axes_or_all(a: &Array, axes: Option<&[i32]>) -> Vec<i32> {
    match axes {
        Some(ax) => ax.to_vec(),
        None => (0..a.ndim() as i32).collect(),
    }
}

/// Moves the zero-frequency term to the centre along `axes` (`None`: all axes).
#[track_caller]
pub fn fftshift(a: &Array, axes: Option<&[i32]>) -> Result<Array> {
    let axes = axes_or_all(a, axes);
    stream_op(|res, s| unsafe {
        sys::mlx_fft_fftshift(res, a.as_raw(), axes.as_ptr(), axes.len(), s)
    })
}

/// Inverse of [`fftshift`] along `axes` (`None`: all axes).
#[track_caller]
pub fn ifftshift(a: &Array, axes: Option<&[i32]>) -> Result<Array> {
    let axes = axes_or_all(a, axes);
    stream_op(|res, s| unsafe {
        sys::mlx_fft_ifftshift(res, a.as_raw(), axes.as_ptr(), axes.len(), s)
    })
}
