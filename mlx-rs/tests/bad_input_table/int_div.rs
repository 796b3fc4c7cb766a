//! Class 1: integer division traps. `x // 0`, `x % 0` and `MIN // -1` killed the process
//! with SIGFPE in MLX's CPU kernels; they now give NumPy's values (documented in
//! `ops::arithmetic`): `x // 0 == 0`, `x % 0 == 0`, `MIN // -1 == MIN`, `MIN % -1 == 0`.

use super::Table;
use mlx_rs::{ops, transforms, Array, Dtype};

/// The integer dtypes, with their minimum as an `i64` (0 for unsigned types).
const INT_DTYPES: [(Dtype, i64); 8] = [
    (Dtype::Int8, i8::MIN as i64),
    (Dtype::Int16, i16::MIN as i64),
    (Dtype::Int32, i32::MIN as i64),
    (Dtype::Int64, i64::MIN),
    (Dtype::Uint8, 0),
    (Dtype::Uint16, 0),
    (Dtype::Uint32, 0),
    (Dtype::Uint64, 0),
];

fn ints(values: &[i64], dtype: Dtype) -> Array {
    Array::from_slice(values, &[values.len() as i32])
        .unwrap()
        .astype(dtype)
        .unwrap()
}

fn values(a: &Array) -> Vec<i64> {
    a.astype(Dtype::Int64).unwrap().to_vec::<i64>().unwrap()
}

type BinOp = fn(&Array, &Array) -> mlx_rs::Result<Array>;

/// Each op of the class, with how it is called in the table.
fn ops_of_the_class() -> Vec<(&'static str, BinOp, bool)> {
    // (name, op, true if it gives the quotient, false for the remainder)
    vec![
        ("ops::floor_divide(&a, &b)", ops::floor_divide, true),
        ("a.floor_divide(&b)", |a, b| a.floor_divide(b), true),
        ("ops::remainder(&a, &b)", ops::remainder, false),
        ("&a % &b", |a, b| Ok(a % b), false),
        (
            "ops::divmod(&a, &b).0",
            |a, b| Ok(ops::divmod(a, b)?.0),
            true,
        ),
        (
            "ops::divmod(&a, &b).1",
            |a, b| Ok(ops::divmod(a, b)?.1),
            false,
        ),
    ]
}

pub(super) fn run(t: &mut Table) {
    t.section(
        "Integer division by zero and `MIN / -1`",
        "Each op is run for every integer dtype; `a` and `b` are cast to the dtype.",
    );
    for (call, op, quotient) in ops_of_the_class() {
        for signed in [true, false] {
            let mut names = Vec::new();
            let mut shown = String::new();
            for &(dtype, min) in INT_DTYPES.iter().filter(|d| (d.1 < 0) == signed) {
                // x / 0 for positive, negative and zero x; MIN / -1; and an ordinary case.
                let (a, b, want): (Vec<i64>, Vec<i64>, Vec<i64>) = if signed {
                    let q = vec![0, 0, 0, min, 3];
                    let r = vec![0, 0, 0, 0, 1];
                    (
                        vec![7, -7, 0, min, 7],
                        vec![0, 0, 0, -1, 2],
                        if quotient { q } else { r },
                    )
                } else {
                    let q = vec![0, 0, 3];
                    let r = vec![0, 0, 1];
                    (vec![7, 0, 7], vec![0, 0, 2], if quotient { q } else { r })
                };
                let got = values(&op(&ints(&a, dtype), &ints(&b, dtype)).unwrap());
                assert_eq!(got, want, "{call} for {dtype}");
                names.push(dtype.to_string());
                shown = format!("`{a:?}` by `{b:?}` → `{got:?}`");
                if signed {
                    shown = shown.replace(&min.to_string(), "MIN");
                }
            }
            t.row(
                &format!(
                    "{} integers ({})",
                    if signed { "signed" } else { "unsigned" },
                    names.join(", ")
                ),
                call,
                &format!("`Ok`: {shown}"),
            );
        }
    }

    // Broadcast divisors, scalar forms, and the float / bool types that never trapped.
    let seven = Array::from_slice(&[7i32, 8], &[2]).unwrap();
    let zero = Array::scalar(0i32);
    let fd = ops::floor_divide(&seven, &zero)
        .unwrap()
        .to_vec::<i32>()
        .unwrap();
    assert_eq!(fd, vec![0, 0]);
    t.ok(
        "broadcast zero divisor",
        "ops::floor_divide(&[7, 8], &0)",
        &fd,
    );
    let rs = seven.remainder_scalar(0).unwrap().to_vec::<i32>().unwrap();
    assert_eq!(rs, vec![0, 0]);
    t.ok(
        "scalar zero divisor",
        "a.remainder_scalar(0) (a = [7, 8])",
        &rs,
    );
    let op = (&seven % 0).to_vec::<i32>().unwrap();
    assert_eq!(op, vec![0, 0]);
    t.ok("`%` operator with a scalar zero", "&a % 0", &op);
    let zeros = Array::from_slice(&[0i32, 0], &[2]).unwrap();
    let sl = (7i32 % &zeros).to_vec::<i32>().unwrap();
    assert_eq!(sl, vec![0, 0]);
    t.ok("`%` operator, scalar on the left", "7 % &[0, 0]", &sl);
    let td = (&seven / &zero).to_vec::<f32>().unwrap();
    assert_eq!(td, vec![f32::INFINITY; 2]);
    t.ok("`/` of integers is true division", "&a / &0", &td);
    let f = Array::from_slice(&[7.0f32, -7.0], &[2]).unwrap();
    let fz = Array::scalar(0.0f32);
    let ff = ops::floor_divide(&f, &fz).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(ff, vec![f32::INFINITY, f32::NEG_INFINITY]);
    t.ok(
        "floats unchanged",
        "ops::floor_divide(&[7.0, -7.0], &0.0)",
        &ff,
    );
    let fr = ops::remainder(&f, &fz).unwrap().to_vec::<f32>().unwrap();
    assert!(fr.iter().all(|v| v.is_nan()));
    t.ok(
        "floats unchanged",
        "ops::remainder(&[7.0, -7.0], &0.0)",
        &fr,
    );
    let mixed = ops::floor_divide(&seven, &fz).unwrap();
    assert_eq!(mixed.dtype(), Dtype::Float32);
    let mixed = mixed.to_vec::<f32>().unwrap();
    t.ok(
        "int by float promotes to float",
        "ops::floor_divide(&[7, 8], &0.0f32)",
        &mixed,
    );
    let bools = Array::from_slice(&[true, false], &[2]).unwrap();
    let bf = Array::from_slice(&[false, false], &[2]).unwrap();
    let bq = ops::floor_divide(&bools, &bf)
        .unwrap()
        .to_vec::<bool>()
        .unwrap();
    t.ok(
        "`bool` by `false` (MLX's own result: no trap)",
        "ops::floor_divide(&[true, false], &[false, false])",
        &bq,
    );

    // The guard is lazy: it holds inside compile and vmap (and for the gradient, which
    // is zero for integer ops, nothing to check).
    let a = Array::from_slice(&[7i32, i32::MIN, 9], &[3]).unwrap();
    let b = Array::from_slice(&[0i32, -1, 4], &[3]).unwrap();
    let compiled = transforms::compile(
        |x: &[Array]| Ok(vec![ops::floor_divide(&x[0], &x[1])?]),
        false,
    )
    .unwrap();
    let c = compiled.call(&[&a, &b]).unwrap()[0]
        .to_vec::<i32>()
        .unwrap();
    assert_eq!(c, vec![0, i32::MIN, 2]);
    t.ok(
        "inside `compile`",
        "compile(floor_divide)([7, MIN, 9], [0, -1, 4])",
        &c.iter()
            .map(|v| v.to_string().replace(&i32::MIN.to_string(), "MIN"))
            .collect::<Vec<_>>(),
    );
    let vm = transforms::vmap(
        |x: &[Array]| Ok(vec![ops::remainder(&x[0], &x[1])?]),
        &[Some(0), Some(0)],
        &[0],
    )
    .unwrap();
    let v = vm.call(&[&a, &b]).unwrap()[0].to_vec::<i32>().unwrap();
    assert_eq!(v, vec![0, 0, 1]);
    t.ok(
        "inside `vmap`",
        "vmap(remainder)([7, MIN, 9], [0, -1, 4])",
        &v,
    );
}
