//! The mlx-rs part of `docs/bad-input.md`: runs each bad-input case of the library,
//! checks that it gives an `Err` (or the documented defined result) without taking the
//! process down, and writes the table of what happens to `target/bad-input-mlx-rs.md`,
//! and into the mlx-rs section of `docs/bad-input.md` when `UPDATE_BAD_INPUT_DOC=1`.
//! One test, so that the memory-limit cases cannot disturb others in this binary.
//!
//! The classes of issue 21 (inputs that reached a signal, an abort or an exit) each have
//! a module under `bad_input_table/` that runs every op of the class, asserts the value
//! or error each gives, and adds a table of its own to the document.

use mlx_rs::{io, memory, ops, Array, Dtype, Stream};
use std::path::{Path, PathBuf};

#[path = "bad_input_table/gather_bounds.rs"]
mod gather_bounds;
#[path = "bad_input_table/int_div.rs"]
mod int_div;
#[path = "bad_input_table/neg_dims.rs"]
mod neg_dims;
#[path = "bad_input_table/zero_size.rs"]
mod zero_size;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mlx-rs-badtable-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

struct Table(String);

impl Table {
    /// A case that must fail: records its message.
    #[track_caller]
    fn err<T: std::fmt::Debug>(&mut self, case: &str, call: &str, r: mlx_rs::Result<T>) {
        let msg = match r {
            Ok(v) => panic!("{case}: accepted ({v:?})"),
            Err(e) => e.to_string(),
        };
        assert!(!msg.is_empty());
        // The location suffix names this file's lines; keep the message only.
        let msg = msg.split(" (at ").next().unwrap().to_string();
        self.row(case, call, &format!("`Err`: `{}`", tidy(&msg)));
    }

    /// A case that must succeed: records the value it gave (already checked).
    fn ok<T: std::fmt::Debug>(&mut self, case: &str, call: &str, value: &T) {
        let shown = format!("{value:?}").replace('"', "");
        self.row(case, call, &format!("`Ok`: `{}`", tidy(&shown)));
    }

    fn row(&mut self, case: &str, call: &str, result: &str) {
        self.0.push_str(&format!(
            "| {case} | `{}` | {result} |\n",
            call.replace('|', "\\|")
        ));
    }

    /// Starts the table of one class of cases, with a line saying how it was probed.
    fn section(&mut self, title: &str, note: &str) {
        self.0.push_str(&format!(
            "\n### {title}\n\n{note}\n\n| Case | Call | Result |\n| --- | --- | --- |\n"
        ));
    }
}

fn tidy(text: &str) -> String {
    let tmp = std::env::temp_dir();
    let tmp = tmp.to_str().unwrap().trim_end_matches('/');
    let registry = text.find("/mlx-c/mlx/c/").and_then(|end| {
        let start = text[..end].rfind(" at /")? + 4;
        Some(text[start..end].to_string())
    });
    let text = match registry {
        Some(prefix) => text.replace(&prefix, "…"),
        None => text.to_string(),
    };
    text.replace(&format!("{tmp}/"), "<tmp>/")
        .replace(&format!("{tmp}:"), "<tmp>:")
        .replace(&format!("-{}", std::process::id()), "")
        .replace('|', "\\|")
        .replace('\n', " ")
}

#[test]
fn bad_input_table() {
    let mut t = Table(String::from(
        "| Case | Call | Result |\n| --- | --- | --- |\n",
    ));
    let w = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap();

    // ---- files ----------------------------------------------------------------------
    let st = io::save_safetensors_writer([("w", &w)], [("", ""); 0]).unwrap();
    let npy = io::save_writer(&w).unwrap();
    let gguf = scratch("ok.gguf");
    io::save_gguf(
        &gguf,
        [("w", &w)],
        std::collections::HashMap::<String, io::GgufValue>::new(),
    )
    .unwrap();
    let gguf_bytes = std::fs::read(&gguf).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = scratch(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };

    t.err(
        "file missing",
        "io::load(\"<tmp>/none.npy\")",
        io::load(scratch("none.npy")),
    );
    t.err(
        "a folder, not a file",
        "io::load_safetensors(<tmp>)",
        io::load_safetensors(std::env::temp_dir()),
    );
    t.err(
        "`.npy` truncated",
        "io::load(path)",
        io::load(write("t.npy", &npy[..npy.len() - 5])),
    );
    t.err(
        "`.npy` garbage",
        "io::load_reader(bytes)",
        io::load_reader(&b"\x93NUMPY\x01\x00garbage"[..]),
    );
    let neg = b"\x93NUMPY\x01\x00\x46\x00{'descr': '<f4', 'fortran_order': False, 'shape': (2,-3), }          \n";
    t.err(
        "`.npy` with a negative dimension",
        "io::load_reader(bytes)",
        io::load_reader(&neg[..]),
    );
    let long = b"\x93NUMPY\x02\x00\x40\xff\xff\xff{'descr': '<f4', 'shape': (2,), }";
    t.err(
        "`.npy` header length field past the end (4 GiB)",
        "io::load_reader(bytes)",
        io::load_reader(&long[..]),
    );
    let name = "%n%s%x";
    let header =
        format!("{{\"{name}\":{{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}}}");
    let mut pct = (header.len() as u64).to_le_bytes().to_vec();
    pct.extend_from_slice(header.as_bytes());
    t.err(
        "`%` conversions in a tensor name (MLX quotes it)",
        "io::load_safetensors_reader(bytes)",
        io::load_safetensors_reader(pct),
    );
    t.err(
        "safetensors truncated",
        "io::load_safetensors(path)",
        io::load_safetensors(write("t.safetensors", &st[..st.len() - 3])),
    );
    t.err(
        "safetensors garbage",
        "io::load_safetensors_reader(bytes)",
        io::load_safetensors_reader(&b"\xff\xff\xff\xff\xff\xff\xff\x7fjunk"[..]),
    );
    let past = b"\x40\x00\x00\x00\x00\x00\x00\x00{\"x\":{\"dtype\":\"F32\",\"shape\":[1024],\"data_offsets\":[0,4096]}}    ";
    t.err(
        "safetensors offsets past the end",
        "io::load_safetensors_reader(bytes)",
        io::load_safetensors_reader(&past[..]),
    );
    t.err(
        "GGUF truncated",
        "io::load_gguf(path)",
        io::load_gguf(write("t.gguf", &gguf_bytes[..gguf_bytes.len() / 2])),
    );
    t.err(
        "GGUF garbage",
        "io::load_gguf(path)",
        io::load_gguf(write(
            "g.gguf",
            b"GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff",
        )),
    );
    t.err(
        "save into a missing folder",
        "io::save(\"<tmp>/no/such/x.npy\", &a)",
        io::save(scratch("no/such/x.npy"), &w),
    );
    t.err(
        "save onto a folder",
        "io::save_safetensors(<tmp>, …)",
        io::save_safetensors(std::env::temp_dir(), [("w", &w)], [("", ""); 0]),
    );
    t.err(
        "save without the extension",
        "io::save(\"<tmp>/x\", &a)",
        io::save(scratch("x"), &w),
    );
    t.err(
        "save a dtype GGUF cannot hold",
        "io::save_gguf(path, [(\"b\", bool array)], …)",
        io::save_gguf(
            scratch("b.gguf"),
            [("b", Array::from_slice(&[true], &[1]).unwrap())],
            std::collections::HashMap::<String, io::GgufValue>::new(),
        ),
    );

    // ---- arrays and ops -------------------------------------------------------------
    t.err(
        "data length does not match the shape",
        "Array::from_slice(&[1.0; 3], &[2, 2])",
        Array::from_slice(&[1.0f32; 3], &[2, 2]),
    );
    t.err(
        "read as the wrong type",
        "a.to_vec::<i32>() (a: float32)",
        w.to_vec::<i32>(),
    );
    t.err(
        "shapes that do not broadcast",
        "a.add(&b) ([2, 2] + [3])",
        w.add(&Array::from_slice(&[1.0f32; 3], &[3]).unwrap()),
    );
    t.err(
        "reshape to another size",
        "a.reshape(&[3])",
        w.reshape(&[3]),
    );
    t.err(
        "integer index out of range",
        "a.index(&s![2])",
        w.index(&mlx_rs::s![2]),
    );
    let idx = Array::from_slice(&[-1i32, 7, -9], &[3]).unwrap();
    let taken = ops::take(&w, &idx).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(taken, vec![4.0, 4.0, 1.0]);
    t.row(
        "index array with out-of-range values (read)",
        "ops::take(&[1, 2, 3, 4], &[-1, 7, -9])",
        &format!("clamped: `{taken:?}`"),
    );
    let flat = w.reshape(&[4]).unwrap();
    let up = Array::from_slice(&[9.0f32; 3], &[3, 1]).unwrap();
    let put = ops::scatter(&flat, &[&idx], &up, &[0])
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(put, vec![1.0, 2.0, 3.0, 9.0]);
    t.row(
        "index array with out-of-range values (write)",
        "ops::scatter(&[1, 2, 3, 4], &[[-1, 7, -9]], 9, &[0])",
        &format!("dropped: `{put:?}`"),
    );
    let empty = Array::from_slice::<f32>(&[], &[0]).unwrap();
    t.err(
        "index into an empty axis",
        "ops::take(&[], &[0])",
        ops::take(&empty, &Array::from_slice(&[0i32], &[1]).unwrap()),
    );

    // ---- memory ---------------------------------------------------------------------
    t.err(
        "array larger than memory",
        "ops::zeros(&[1 << 19, 1 << 19], Float32)",
        ops::zeros(&[1 << 19, 1 << 19], Dtype::Float32),
    );
    t.err(
        "byte count beyond 64 bits",
        "ops::ones(&[i32::MAX; 3], Float64)",
        ops::ones(&[i32::MAX; 3], Dtype::Float64),
    );
    let image = io::save_safetensors_writer(
        [("z", ops::zeros(&[1 << 18], Dtype::Float32).unwrap())],
        [("", ""); 0],
    )
    .unwrap();
    let old = memory::get_memory_limit().unwrap();
    memory::set_memory_limit(1 << 20).unwrap();
    let made = Array::from_slice(&vec![0u8; 2 << 20], &[2 << 20]);
    let loaded = io::load_safetensors_reader(image);
    memory::set_memory_limit(old).unwrap();
    t.err(
        "memory limit too small (1 MiB): make 2 MiB",
        "memory::set_memory_limit(1 << 20); Array::from_slice(&[0u8; 2 << 20], …)",
        made,
    );
    t.err(
        "memory limit too small (1 MiB): load 1 MiB",
        "io::load_safetensors_reader(image of 1 MiB)",
        loaded,
    );

    // ---- devices --------------------------------------------------------------------
    if !mlx_rs::Device::gpu().is_available() {
        let gpu = Stream::gpu();
        assert!(!gpu.is_valid());
        t.err(
            "GPU stream on a CPU-only build",
            "Stream::gpu().scope(|| a.square())",
            gpu.scope(|| w.square()),
        );
        t.err(
            "GPU as the default device on a CPU-only build",
            "Device::set_default(&Device::gpu())",
            mlx_rs::Device::set_default(&mlx_rs::Device::gpu()),
        );
    }

    int_div::run(&mut t);
    zero_size::run(&mut t);
    neg_dims::run(&mut t);
    gather_bounds::run(&mut t);
    // ---- begin issue 21 part B: BLAS exits, deep graphs, process limits ------
    part_b(&mut t);
    // ---- end issue 21 part B ----------------------------------------------------------

    let table = t.0;
    // Cases per table (the general one first, then one per class of issue 21).
    for part in table.split("\n### ") {
        let title = part.lines().next().filter(|l| !l.starts_with('|'));
        let title = title.unwrap_or("general (files, arrays, memory, devices)");
        let rows = part
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| Case") && !l.starts_with("| ---"))
            .count();
        eprintln!("{rows:4} rows: {title}");
    }
    let _ = std::fs::write(workspace_root().join("target/bad-input-mlx-rs.md"), &table);
    if std::env::var_os("UPDATE_BAD_INPUT_DOC").is_some() {
        let path = workspace_root().join("docs/bad-input.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (begin, end) = ("<!-- begin mlx-rs -->\n", "<!-- end mlx-rs -->");
        let a = doc.find(begin).unwrap() + begin.len();
        let b = doc.find(end).unwrap();
        std::fs::write(&path, format!("{}{table}{}", &doc[..a], &doc[b..])).unwrap();
    }
}

// ---- begin issue 21 part B: BLAS exits, deep graphs, process limits ----------

fn chain(x: &Array, n: usize) -> mlx_rs::Result<Array> {
    let one = Array::scalar(1.0f32);
    let mut y = x.clone();
    for _ in 0..n {
        y = y.add(&one)?;
    }
    Ok(y)
}

fn part_b(t: &mut Table) {
    use mlx_rs::{graph, linalg, transforms};
    let ones = |s: &[i32]| ops::ones(s, Dtype::Float32).unwrap();
    // BLAS/LAPACK
    let y = ops::conv1d(&ones(&[1, 5, 3]), &ones(&[0, 3, 3]), Default::default()).unwrap();
    assert_eq!(y.shape(), &[1, 3, 0]);
    y.eval().unwrap();
    t.row(
        "convolution with zero output channels (reached SGEMM with ldc 0: exit 0)",
        "ops::conv1d(ones([1, 5, 3]), ones([0, 3, 3]), …)",
        &format!("empty: shape `{:?}`", y.shape()),
    );
    let y = ops::conv_transpose2d(
        &ones(&[1, 5, 5, 3]),
        &ones(&[0, 3, 3, 3]),
        Default::default(),
    )
    .unwrap();
    t.row(
        "transposed convolution with zero output channels",
        "ops::conv_transpose2d(ones([1, 5, 5, 3]), ones([0, 3, 3, 3]), …)",
        &format!("empty: shape `{:?}`", y.shape()),
    );
    let nan = Array::from_slice(&[f32::NAN; 4], &[2, 2]).unwrap();
    t.err(
        "eigenvalues of a NaN matrix (reached SGEBAL with an illegal argument: exit 0)",
        "linalg::eigvals(&[[NaN, NaN], [NaN, NaN]])",
        linalg::eigvals(&nan).and_then(|a| a.eval()),
    );
    t.err(
        "eigen-decomposition of a NaN matrix",
        "linalg::eig(&[[NaN, NaN], [NaN, NaN]])",
        linalg::eig(&nan).and_then(|(v, _)| v.eval()),
    );
    t.row(
        "any other illegal BLAS/LAPACK argument",
        "mlx_rs::blas_errors_are_caught()",
        &format!(
            "`{}`: the evaluation fails with the routine and argument",
            mlx_rs::blas_errors_are_caught()
        ),
    );
    // Deep graphs
    let x = Array::from_slice(&[0.0f32], &[1]).unwrap();
    let deep = chain(&x, 100_000).unwrap();
    let listing = graph::print_graph(&[&deep], &[]).unwrap();
    t.row(
        "listing a 100,000-op chain (overflowed the stack: abort)",
        "graph::print_graph(&[chain of 100,000 adds], &[])",
        &format!("`Ok`: {} lines", listing.lines().count()),
    );
    let dot = graph::to_dot(&[&deep], &[]).unwrap();
    t.row(
        "Graphviz of a 100,000-op chain (abort)",
        "graph::to_dot(&[chain of 100,000 adds], &[])",
        &format!("`Ok`: {} lines", dot.lines().count()),
    );
    drop((listing, dot));
    let g = transforms::grad(
        |a: &[Array]| Ok(vec![chain(&a[0], 100_000)?.sum(false)?]),
        &[0],
    )
    .unwrap();
    let d = g.call(&[&x]).unwrap()[0].to_vec::<f32>().unwrap();
    t.row(
        "gradient through a 100,000-op chain (abort; 1,000,000 in `tests/hardening.rs`)",
        "transforms::grad(sum of a chain of 100,000 adds, &[0])",
        &format!("`Ok`: `{d:?}`"),
    );
    let f = transforms::compile(|a: &[Array]| Ok(vec![chain(&a[0], 20_000)?]), false).unwrap();
    let c = f.call(&[&x]).unwrap()[0].to_vec::<f32>().unwrap();
    t.row(
        "compiling a 20,000-op chain (abort from about 8,000 on a 2 MiB thread stack)",
        "transforms::compile(a chain of 20,000 adds, false)",
        &format!("`Ok`: `{c:?}`"),
    );
    // Process memory limits
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let vm = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(|pages| pages * 4096);
    // SAFETY: plain system calls on structs owned here; the soft limit is restored below.
    let limited = vm.is_some_and(|vm| unsafe {
        libc::getrlimit(libc::RLIMIT_AS, &mut old) == 0
            && libc::setrlimit(
                libc::RLIMIT_AS,
                &libc::rlimit {
                    rlim_cur: ((vm + (2 << 30)) as libc::rlim_t).min(old.rlim_max),
                    rlim_max: old.rlim_max,
                },
            ) == 0
    });
    if limited {
        let r = ops::zeros(&[1 << 30], Dtype::Float32);
        // SAFETY: restores the soft limit read above.
        unsafe { libc::setrlimit(libc::RLIMIT_AS, &old) };
        let msg = r.as_ref().map(|_| ()).unwrap_err().to_string();
        let msg = msg.split(" more under").next().unwrap_or(&msg).to_string();
        let msg = format!("{msg} more under its address-space limit (ulimit -v) …");
        t.row(
            "array larger than `ulimit -v` allows (segfault when evaluated)",
            "setrlimit(RLIMIT_AS, used + 2 GiB); ops::zeros(&[1 << 30], Float32)",
            &format!(
                "`Err`: `out of memory: {}`",
                tidy(msg.trim_start_matches("out of memory: "))
            ),
        );
    }
}

// ---- end issue 21 part B --------------------------------------------------------------
