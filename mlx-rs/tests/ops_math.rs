//! Math ops against Python MLX (fixtures from tests/oracle/gen_ops_math.py), their
//! `Array` method forms, and the errors they return for bad input.

mod common;

use common::Case;
use mlx_rs::{ops, Array, Dtype, Error, Result};

type Unary = fn(&Array) -> Result<Array>;
type Binary = fn(&Array, &Array) -> Result<Array>;

fn unary(op: &str) -> Option<Unary> {
    Some(match op {
        "abs" => ops::abs,
        "exp" => ops::exp,
        "expm1" => ops::expm1,
        "log" => ops::log,
        "log10" => ops::log10,
        "log2" => ops::log2,
        "log1p" => ops::log1p,
        "sin" => ops::sin,
        "cos" => ops::cos,
        "tan" => ops::tan,
        "sinh" => ops::sinh,
        "cosh" => ops::cosh,
        "tanh" => ops::tanh,
        "arcsin" => ops::arcsin,
        "arccos" => ops::arccos,
        "arctan" => ops::arctan,
        "arcsinh" => ops::arcsinh,
        "arccosh" => ops::arccosh,
        "arctanh" => ops::arctanh,
        "degrees" => ops::degrees,
        "radians" => ops::radians,
        "ceil" => ops::ceil,
        "floor" => ops::floor,
        "trunc" => ops::trunc,
        "erf" => ops::erf,
        "erfinv" => ops::erfinv,
        "sigmoid" => ops::sigmoid,
        "sign" => ops::sign,
        "reciprocal" => ops::reciprocal,
        "rsqrt" => ops::rsqrt,
        "sqrt" => ops::sqrt,
        "square" => ops::square,
        "negative" => ops::negative,
        "positive" => ops::positive,
        "stop_gradient" => ops::stop_gradient,
        "real" => ops::real,
        "imag" => ops::imag,
        "conjugate" => ops::conjugate,
        "isnan" => ops::isnan,
        "isinf" => ops::isinf,
        "isfinite" => ops::isfinite,
        "isneginf" => ops::isneginf,
        "isposinf" => ops::isposinf,
        "logical_not" => ops::logical_not,
        "bitwise_invert" => ops::bitwise_invert,
        _ => return None,
    })
}

fn binary(op: &str) -> Option<Binary> {
    Some(match op {
        "add" => ops::add,
        "subtract" => ops::subtract,
        "multiply" => ops::multiply,
        "divide" => ops::divide,
        "power" => ops::power,
        "remainder" => ops::remainder,
        "floor_divide" => ops::floor_divide,
        "maximum" => ops::maximum,
        "minimum" => ops::minimum,
        "logaddexp" => ops::logaddexp,
        "arctan2" => ops::arctan2,
        "matmul" => ops::matmul,
        "equal" => ops::equal,
        "not_equal" => ops::not_equal,
        "less" => ops::less,
        "less_equal" => ops::less_equal,
        "greater" => ops::greater,
        "greater_equal" => ops::greater_equal,
        "logical_and" => ops::logical_and,
        "logical_or" => ops::logical_or,
        "logical_xor" => ops::logical_xor,
        "bitwise_and" => ops::bitwise_and,
        "bitwise_or" => ops::bitwise_or,
        "bitwise_xor" => ops::bitwise_xor,
        "left_shift" => ops::left_shift,
        "right_shift" => ops::right_shift,
        "inner" => ops::inner,
        "outer" => ops::outer,
        "kron" => ops::kron,
        _ => return None,
    })
}

fn opt_f32(c: &Case, key: &str) -> Option<f32> {
    c.args.get(key).and_then(|v| v.as_f64()).map(|v| v as f32)
}

fn opt_dtype(c: &Case, key: &str) -> Option<Dtype> {
    c.args
        .get(key)
        .and_then(|v| v.as_str())
        .map(|s| Dtype::from_name(s).unwrap_or_else(|| panic!("{}: dtype {s}", c.name)))
}

/// Runs the case's op through the free function of the same name.
fn run(c: &Case) -> Result<Vec<Array>> {
    let op = c.op.as_str();
    // Cases that need NaN or infinities feed the op inputs[0] / inputs[1].
    let x = if c.args.get("ratio").is_some() {
        ops::divide(&c.input(0), &c.input(1))?
    } else {
        c.input(0)
    };
    if let Some(f) = unary(op) {
        return Ok(vec![f(&x)?]);
    }
    if let Some(f) = binary(op) {
        return Ok(vec![f(&x, &c.input(1))?]);
    }
    let kd = || c.bool("keepdims");
    let one = match op {
        "divmod" => {
            let (q, r) = ops::divmod(&x, &c.input(1))?;
            return Ok(vec![q, r]);
        }
        "round" => ops::round(&x, c.int("decimals")),
        "clip" => {
            let bound = c.input(1);
            match c.str("bounds").as_str() {
                "both" => ops::clip(&x, Some(&bound), Some(&c.input(2))),
                "min" => ops::clip(&x, Some(&bound), None),
                _ => ops::clip(&x, None, Some(&bound)),
            }
        }
        "nan_to_num" => ops::nan_to_num(
            &x,
            c.float("nan") as f32,
            opt_f32(c, "posinf"),
            opt_f32(c, "neginf"),
        ),
        "isclose" | "allclose" => {
            let f = if op == "isclose" {
                ops::isclose
            } else {
                ops::allclose
            };
            f(
                &x,
                &c.input(1),
                c.float("rtol"),
                c.float("atol"),
                c.bool("equal_nan"),
            )
        }
        "array_equal" => ops::array_equal(&x, &c.input(1), c.bool("equal_nan")),
        "where" => ops::r#where(&x, &c.input(1), &c.input(2)),
        "sum" => ops::sum(&x, kd()),
        "sum_axis" => ops::sum_axis(&x, c.int("axis"), kd()),
        "sum_axes" => ops::sum_axes(&x, &c.ints("axes"), kd()),
        "mean" => ops::mean(&x, kd()),
        "mean_axis" => ops::mean_axis(&x, c.int("axis"), kd()),
        "mean_axes" => ops::mean_axes(&x, &c.ints("axes"), kd()),
        "max" => ops::max(&x, kd()),
        "max_axis" => ops::max_axis(&x, c.int("axis"), kd()),
        "max_axes" => ops::max_axes(&x, &c.ints("axes"), kd()),
        "min" => ops::min(&x, kd()),
        "min_axis" => ops::min_axis(&x, c.int("axis"), kd()),
        "min_axes" => ops::min_axes(&x, &c.ints("axes"), kd()),
        "prod" => ops::prod(&x, kd()),
        "prod_axis" => ops::prod_axis(&x, c.int("axis"), kd()),
        "prod_axes" => ops::prod_axes(&x, &c.ints("axes"), kd()),
        "all" => ops::all(&x, kd()),
        "all_axis" => ops::all_axis(&x, c.int("axis"), kd()),
        "all_axes" => ops::all_axes(&x, &c.ints("axes"), kd()),
        "any" => ops::any(&x, kd()),
        "any_axis" => ops::any_axis(&x, c.int("axis"), kd()),
        "any_axes" => ops::any_axes(&x, &c.ints("axes"), kd()),
        "logsumexp" => ops::logsumexp(&x, kd()),
        "logsumexp_axis" => ops::logsumexp_axis(&x, c.int("axis"), kd()),
        "logsumexp_axes" => ops::logsumexp_axes(&x, &c.ints("axes"), kd()),
        "count_nonzero" => ops::count_nonzero(&x, kd()),
        "count_nonzero_axis" => ops::count_nonzero_axis(&x, c.int("axis"), kd()),
        "count_nonzero_axes" => ops::count_nonzero_axes(&x, &c.ints("axes"), kd()),
        "median" => ops::median(&x, kd()),
        "median_axis" => ops::median_axis(&x, c.int("axis"), kd()),
        "median_axes" => ops::median_axes(&x, &c.ints("axes"), kd()),
        "var" => ops::var(&x, kd(), c.int("ddof")),
        "var_axis" => ops::var_axis(&x, c.int("axis"), kd(), c.int("ddof")),
        "var_axes" => ops::var_axes(&x, &c.ints("axes"), kd(), c.int("ddof")),
        "std" => ops::std(&x, kd(), c.int("ddof")),
        "std_axis" => ops::std_axis(&x, c.int("axis"), kd(), c.int("ddof")),
        "std_axes" => ops::std_axes(&x, &c.ints("axes"), kd(), c.int("ddof")),
        "argmax" => ops::argmax(&x, kd()),
        "argmax_axis" => ops::argmax_axis(&x, c.int("axis"), kd()),
        "argmin" => ops::argmin(&x, kd()),
        "argmin_axis" => ops::argmin_axis(&x, c.int("axis"), kd()),
        "cumsum" | "cumprod" => {
            let f = if op == "cumsum" {
                ops::cumsum
            } else {
                ops::cumprod
            };
            f(
                &x,
                c.bool("reverse"),
                c.bool("inclusive"),
                opt_dtype(c, "dtype"),
            )
        }
        "cumsum_axis" | "cumprod_axis" => {
            let f = if op == "cumsum_axis" {
                ops::cumsum_axis
            } else {
                ops::cumprod_axis
            };
            f(
                &x,
                c.int("axis"),
                c.bool("reverse"),
                c.bool("inclusive"),
                opt_dtype(c, "dtype"),
            )
        }
        "cummax" => ops::cummax(&x, c.bool("reverse"), c.bool("inclusive")),
        "cummin" => ops::cummin(&x, c.bool("reverse"), c.bool("inclusive")),
        "logcumsumexp" => ops::logcumsumexp(&x, c.bool("reverse"), c.bool("inclusive")),
        "cummax_axis" => {
            ops::cummax_axis(&x, c.int("axis"), c.bool("reverse"), c.bool("inclusive"))
        }
        "cummin_axis" => {
            ops::cummin_axis(&x, c.int("axis"), c.bool("reverse"), c.bool("inclusive"))
        }
        "logcumsumexp_axis" => {
            ops::logcumsumexp_axis(&x, c.int("axis"), c.bool("reverse"), c.bool("inclusive"))
        }
        "softmax" => ops::softmax(&x, c.bool("precise")),
        "softmax_axis" => ops::softmax_axis(&x, c.int("axis"), c.bool("precise")),
        "softmax_axes" => ops::softmax_axes(&x, &c.ints("axes"), c.bool("precise")),
        "addmm" => ops::addmm(
            &x,
            &c.input(1),
            &c.input(2),
            c.float("alpha") as f32,
            c.float("beta") as f32,
        ),
        "tensordot" => ops::tensordot(&x, &c.input(1), &c.ints("axes_a"), &c.ints("axes_b")),
        "tensordot_axis" => ops::tensordot_axis(&x, &c.input(1), c.int("axis")),
        "vecdot" => ops::vecdot(&x, &c.input(1), c.int("axis")),
        "einsum" => {
            let operands: Vec<Array> = (0..c.inputs.len()).map(|i| c.input(i)).collect();
            ops::einsum(&c.str("subscripts"), &operands)
        }
        other => panic!("{}: no dispatch for op {other}", c.name),
    };
    Ok(vec![one?])
}

#[test]
fn oracle_cases() {
    let cases = common::load("ops_math");
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    for c in &cases {
        let outs = run(c).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(outs.len(), c.outputs.len(), "{}: number of outputs", c.name);
        for (i, out) in outs.iter().enumerate() {
            c.check(i, out);
        }
    }
}

fn arr(v: &[f32], shape: &[i32]) -> Array {
    Array::from_slice(v, shape).unwrap()
}

#[test]
fn methods_match_free_functions() {
    let a = arr(&[1.0, -2.0, 3.0, 4.0, 0.5, -6.0], &[2, 3]);
    let b = arr(&[2.0, 2.0, 2.0], &[3]);
    let same = |x: Array, y: Array| {
        assert_eq!(x.shape(), y.shape());
        assert_eq!(x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    };
    same(
        a.sum_axes(&[1], true).unwrap(),
        ops::sum_axes(&a, &[1], true).unwrap(),
    );
    assert_eq!(a.sum_axes(&[1], true).unwrap().shape(), &[2, 1]);
    same(
        a.mean_axis(0, false).unwrap(),
        ops::mean_axis(&a, 0, false).unwrap(),
    );
    same(a.exp().unwrap(), ops::exp(&a).unwrap());
    same(
        a.softmax_axis(-1, false).unwrap(),
        ops::softmax_axis(&a, -1, false).unwrap(),
    );
    same(a.maximum(&b).unwrap(), ops::maximum(&a, &b).unwrap());
    same(
        a.std_axis(1, false, 1).unwrap(),
        ops::std_axis(&a, 1, false, 1).unwrap(),
    );
    same(
        a.cumsum_axis(1, true, false, None).unwrap(),
        ops::cumsum_axis(&a, 1, true, false, None).unwrap(),
    );
    same(
        a.clip(Some(&Array::scalar(0.0f32)), None).unwrap(),
        ops::clip(&a, Some(&Array::scalar(0.0f32)), None).unwrap(),
    );
    let (q, r) = a.divmod(&b).unwrap();
    assert_eq!(
        q.to_vec::<f32>().unwrap(),
        vec![0.0, -1.0, 1.0, 2.0, 0.0, -3.0]
    );
    assert_eq!(
        r.to_vec::<f32>().unwrap(),
        vec![1.0, 0.0, 1.0, 0.0, 0.5, 0.0]
    );
    let idx = a.argmax_axis(1, false).unwrap();
    assert_eq!(idx.dtype(), Dtype::Uint32);
    assert_eq!(idx.to_vec::<u32>().unwrap(), vec![2, 0]);
    assert!(a
        .allclose(&a, 1e-5, 1e-8, false)
        .unwrap()
        .item::<bool>()
        .unwrap());
}

#[test]
fn empty_axes_reduce_nothing() {
    let a = arr(&[1.0, 2.0, 3.0], &[3]);
    let s = a.sum_axes(&[], false).unwrap();
    assert_eq!(s.shape(), &[3]);
    assert_eq!(s.to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0]);
}

/// Asserts that `r` is an MLX error whose message contains `needle`.
#[track_caller]
fn assert_mlx_err(r: Result<Array>, needle: &str) {
    match r {
        Err(Error::Mlx { message, .. }) => {
            assert!(
                message.contains(needle),
                "message {message:?} lacks {needle:?}"
            )
        }
        Err(e) => panic!("expected an MLX error containing {needle:?}, got {e:?}"),
        Ok(a) => panic!("expected an error containing {needle:?}, got {a:?}"),
    }
}

#[test]
fn bad_inputs_are_errors() {
    let a = arr(&[1.0; 6], &[2, 3]);
    let v4 = arr(&[1.0; 4], &[4]);
    assert_mlx_err(ops::add(&a, &v4), "cannot be broadcast");
    assert_mlx_err(a.maximum(&v4), "cannot be broadcast");
    assert_mlx_err(
        ops::r#where(&Array::scalar(true), &a, &v4),
        "cannot be broadcast",
    );
    assert_mlx_err(ops::matmul(&a, &a), "[matmul]");
    assert_mlx_err(ops::sum_axis(&a, 2, false), "Invalid axis 2");
    assert_mlx_err(
        ops::mean_axes(&a, &[0, -3], false),
        "axis -3 is out of bounds",
    );
    assert_mlx_err(ops::std_axes(&a, &[0, 0], false, 0), "Duplicate axes");
    assert_mlx_err(ops::argmax_axis(&a, -3, false), "Invalid axis -3");
    assert_mlx_err(
        ops::cumsum_axis(&a, 5, false, true, None),
        "Axis 5 is out of bounds",
    );
    assert_mlx_err(ops::softmax_axis(&a, 3, false), "Invalid axis 3");
    assert_mlx_err(ops::bitwise_and(&a, &a), "integer or boolean");
    assert_mlx_err(ops::left_shift(&a, &a), "integer or boolean");
    assert_mlx_err(ops::bitwise_invert(&a), "only allowed on integer types");
    assert_mlx_err(ops::clip(&a, None, None), "At most one of a_min and a_max");
    assert_mlx_err(ops::tensordot(&a, &a, &[0, 1], &[0]), "same size");
    assert_mlx_err(
        ops::tensordot_axis(&a, &v4, 1),
        "same shape on the contracted axes",
    );
    assert_mlx_err(ops::einsum("ij,jk->ik", &[&a]), "Number of operands");
    assert_mlx_err(
        ops::einsum("ij,jk->ik", &[&a, &a]),
        "Cannot broadcast dimension",
    );
    // An output subscript that no input has.
    assert_mlx_err(ops::einsum("ij->ikq", &[&a]), "axes");
    assert_mlx_err(ops::inner(&a, &v4), "same last dimension");
    assert_mlx_err(ops::divmod(&a, &v4).map(|(q, _)| q), "cannot be broadcast");
    // The process survives and keeps working after the errors.
    assert_eq!(ops::sum(&a, false).unwrap().item::<f32>().unwrap(), 6.0);
}

#[test]
fn einsum_subscripts_with_nul_are_invalid() {
    let a = arr(&[1.0; 4], &[2, 2]);
    match ops::einsum("ij\0->i", &[&a]) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("NUL"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn errors_carry_the_callers_location() {
    let a = arr(&[1.0; 6], &[2, 3]);
    let line = line!() + 1;
    match ops::sum_axis(&a, 7, false) {
        Err(Error::Mlx { location, .. }) => {
            assert!(location.file().ends_with("ops_math.rs"), "{location}");
            assert_eq!(location.line(), line);
        }
        other => panic!("expected an MLX error, got {other:?}"),
    }
}
