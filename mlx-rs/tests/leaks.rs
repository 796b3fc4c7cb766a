//! No leaks: thousands of create / op / eval / drop cycles, closures and transforms, failed
//! ops and failed and successful loads must leave memory where it started.
//!
//! Three meters, read before and after each workload (after one warm-up round, so that
//! lazily built statics are in place):
//! - MLX's active memory (array buffers), which must come back exactly;
//! - the bytes live in Rust's allocator (a counting global allocator in this binary),
//!   which catches Rust-side leaks such as a closure payload or an in-memory reader that
//!   MLX never frees; must come back exactly;
//! - glibc's heap in use (`mallinfo2`), which also sees MLX's C++ objects (graph nodes,
//!   primitives); it is noisy (caches, fragmentation), so it must not grow by more than a
//!   small allowance that a per-iteration leak of a few dozen bytes would exceed.
//!
//! The tests share process-wide meters, so they take turns (one lock).

use mlx_rs::transforms::{self, Closure};
use mlx_rs::{io, memory, ops, Array, Device, Dtype, Error, Stream};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Mutex;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

static TURN: Mutex<()> = Mutex::new(());

#[repr(C)]
#[derive(Default)]
struct MallInfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

extern "C" {
    fn mallinfo2() -> MallInfo2;
}

/// Bytes in use in glibc's heap (small blocks plus mmapped ones).
fn heap_in_use() -> usize {
    // SAFETY: glibc's mallinfo2 only reads allocator statistics.
    let m = unsafe { mallinfo2() };
    m.uordblks + m.hblkhd
}

#[derive(Debug, Clone, Copy)]
struct Meters {
    active: usize,
    rust: isize,
    heap: usize,
}

fn settle() {
    mlx_rs::synchronize().unwrap();
    memory::clear_cache().unwrap();
}

fn read() -> Meters {
    settle();
    Meters {
        active: memory::get_active_memory().unwrap(),
        rust: LIVE.load(Ordering::Relaxed),
        heap: heap_in_use(),
    }
}

/// Allowed growth of glibc's heap over a whole workload (thousands of iterations).
const HEAP_SLACK: usize = 256 << 10;

/// Takes this test's turn with the process-wide meters (for the whole test, so that no
/// other test allocates while it measures). The test that had the turn has returned, but
/// the test runner's own thread may still be recording its end (its name, its captured
/// output: allocations and frees the meters would count, ±1 KiB once in ~9 runs): a short
/// pause lets that finish first.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    let guard = TURN.lock().unwrap_or_else(|p| p.into_inner());
    std::thread::sleep(std::time::Duration::from_millis(200));
    guard
}

/// Runs `round` twice to warm up, then `n` times, and checks the meters. The caller
/// holds [`turn`].
fn no_leak(what: &str, n: usize, mut round: impl FnMut(usize)) {
    // LEAKS_SCALE=k runs k times as many rounds (a leak grows with it, noise does not).
    let scale = std::env::var("LEAKS_SCALE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1);
    let n = n * scale.max(1);
    round(0);
    round(1);
    let before = read();
    for i in 0..n {
        round(i);
    }
    let after = read();
    eprintln!("{what}: {n} rounds, before {before:?}, after {after:?}");
    assert_eq!(
        after.active, before.active,
        "{what}: MLX active memory moved from {} to {} bytes",
        before.active, after.active
    );
    assert_eq!(
        after.rust,
        before.rust,
        "{what}: {} bytes of Rust allocations were not freed",
        after.rust - before.rust
    );
    assert!(
        after.heap <= before.heap + HEAP_SLACK,
        "{what}: the C heap grew by {} bytes over {n} rounds ({} per round)",
        after.heap - before.heap,
        (after.heap - before.heap) / n
    );
}

fn f32s(v: &[f32], shape: &[i32]) -> Array {
    Array::from_slice(v, shape).unwrap()
}

#[test]
fn create_op_eval_drop() {
    let _turn = turn();
    no_leak("create/op/eval/drop", 3000, |i| {
        let a = f32s(&[i as f32, 1.0, 2.0, 3.0, 4.0, 5.0], &[2, 3]);
        let b = ops::ones(&[3, 4], Dtype::Float32).unwrap();
        let c = a
            .matmul(&b)
            .unwrap()
            .exp()
            .unwrap()
            .sum_axes(&[1], false)
            .unwrap();
        let d = c.astype(Dtype::Float16).unwrap().reshape(&[1, 2]).unwrap();
        mlx_rs::eval(&[&c, &d]).unwrap();
        assert_eq!(d.shape(), &[1, 2]);
        let _ = c.to_vec::<f32>().unwrap();
        let big = ops::zeros(&[256, 1024], Dtype::Float32).unwrap(); // 1 MiB, checked
        big.add(&big).unwrap().eval().unwrap();
        let idx = Array::from_slice(&[0i32, 5, -1, 99], &[4]).unwrap();
        ops::take(&a, &idx).unwrap().eval().unwrap();
        let up = Array::from_slice(&[1.0f32; 4], &[4, 1]).unwrap();
        ops::scatter(&a.reshape(&[6]).unwrap(), &[&idx], &up, &[0])
            .unwrap()
            .eval()
            .unwrap();
    });
}

#[test]
fn closures_and_transforms() {
    let _turn = turn();
    let cube = |x: &[Array]| -> mlx_rs::Result<Vec<Array>> {
        Ok(vec![x[0].multiply(&x[0])?.multiply(&x[0])?.sum(false)?])
    };
    no_leak("closures/grad/vjp/jvp/vmap/compile", 1000, |i| {
        let x = f32s(&[i as f32 * 0.001, 2.0, 3.0], &[3]);
        let c = Closure::new(cube).unwrap();
        assert_eq!(c.call(&[&x]).unwrap().len(), 1);
        let g = transforms::grad(cube, &[0]).unwrap();
        g.call(&[&x]).unwrap()[0].eval().unwrap();
        let vg = transforms::value_and_grad(cube, &[0]).unwrap();
        let (v, gr) = vg.call(&[&x]).unwrap();
        mlx_rs::eval(&[&v[0], &gr[0]]).unwrap();
        let (_, vjps) = transforms::vjp(cube, &[&x], &[&Array::scalar(1.0f32)]).unwrap();
        vjps[0].eval().unwrap();
        let (_, jvps) = transforms::jvp(cube, &[&x], &[&x]).unwrap();
        jvps[0].eval().unwrap();
        let square = |x: &[Array]| Ok(vec![x[0].square()?]);
        let vm = transforms::vmap(square, &[Some(0)], &[0]).unwrap();
        vm.call(&[&x]).unwrap()[0].eval().unwrap();
        let compiled = transforms::compile(cube, false).unwrap();
        compiled.call(&[&x]).unwrap()[0].eval().unwrap();
        let gg = transforms::grad(transforms::grad(cube, &[0]).unwrap(), &[0]);
        // grad of a non-scalar output is an error: it must not leak either.
        assert!(gg.unwrap().call(&[&x]).is_err());
        let captured = x.clone();
        let with_capture = Closure::new(move |a: &[Array]| Ok(vec![a[0].add(&captured)?])).unwrap();
        with_capture.call(&[&x]).unwrap()[0].eval().unwrap();
    });
    transforms::compile_clear_cache().unwrap();
}

#[test]
fn failed_ops_and_closures() {
    let _turn = turn();
    // Deliberate panics are not printed: the test harness would keep every message in
    // this test's captured output, which the Rust meter would count.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        if !info.payload().is::<Deliberate>() {
            eprintln!("{info}");
        }
    }));
    no_leak("failed ops", 2000, |i| {
        let a = f32s(&[1.0, 2.0, 3.0], &[3]);
        let b = f32s(&[1.0, 2.0], &[2]);
        assert!(a.add(&b).is_err());
        assert!(a.matmul(&b).is_err());
        assert!(a.reshape(&[2, 2]).is_err());
        assert!(ops::take_axis(&a, &Array::scalar(0i32), 3).is_err());
        assert!(ops::zeros(&[-1], Dtype::Float32).is_err());
        assert!(ops::zeros(&[1 << 20, 1 << 20], Dtype::Float32).is_err()); // 4 TiB
        assert!(a.to_vec::<i32>().is_err());
        let failing = |_: &[Array]| -> mlx_rs::Result<Vec<Array>> {
            Err(Error::InvalidArgument(format!("no {i}")))
        };
        assert!(Closure::new(failing).unwrap().call(&[&a]).is_err());
        assert!(transforms::grad(failing, &[0])
            .unwrap()
            .call(&[&a])
            .is_err());
        assert!(transforms::compile(failing, false)
            .unwrap()
            .call(&[&a])
            .is_err());
        let panicking =
            |_: &[Array]| -> mlx_rs::Result<Vec<Array>> { std::panic::panic_any(Deliberate) };
        let c = Closure::new(panicking).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.call(&[&a])));
        assert!(r.unwrap_err().is::<Deliberate>());
    });
    let _ = std::panic::take_hook();
    std::panic::set_hook(default_hook);
}

/// The payload of the panics this test raises on purpose.
struct Deliberate;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("mlx-rs-leaks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn loads_in_memory_and_from_files() {
    let _turn = turn();
    let w = f32s(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let st = io::save_safetensors_writer([("w", &w)], [("k", "v")]).unwrap();
    let npy = io::save_writer(&w).unwrap();
    let (st_path, npy_path, gguf_path) = (
        scratch("a.safetensors"),
        scratch("a.npy"),
        scratch("a.gguf"),
    );
    io::save_safetensors(&st_path, [("w", &w)], [("k", "v")]).unwrap();
    io::save(&npy_path, &w).unwrap();
    io::save_gguf(
        &gguf_path,
        [("w", &w)],
        [("name", io::GgufValue::from("x"))],
    )
    .unwrap();
    let garbage_path = scratch("garbage.gguf");
    std::fs::write(&garbage_path, b"GGUF\x03\0\0\0garbage").unwrap();
    let garbage_st = scratch("garbage.safetensors");
    std::fs::write(&garbage_st, b"\x10\0\0\0\0\0\0\0{\"x\": 1}").unwrap();

    no_leak("loads", 1000, |_| {
        // Successful loads, evaluated and not evaluated (lazy readers must be freed too).
        let m = io::load_safetensors_reader(st.clone()).unwrap();
        m.arrays["w"].eval().unwrap();
        drop(io::load_safetensors_reader(st.as_slice()).unwrap());
        io::load_reader(npy.clone()).unwrap().eval().unwrap();
        drop(io::load_reader(npy.as_slice()).unwrap());
        io::load_safetensors(&st_path).unwrap().arrays["w"]
            .eval()
            .unwrap();
        io::load(&npy_path).unwrap().eval().unwrap();
        let g = io::load_gguf(&gguf_path).unwrap();
        g.arrays["w"].eval().unwrap();
        // Failed loads.
        assert!(io::load_safetensors_reader(&b"\x05\0\0\0\0\0\0\0{}"[..]).is_err());
        assert!(io::load_safetensors_reader(&st[..st.len() - 3]).is_err());
        assert!(io::load_reader(&npy[..20]).is_err());
        assert!(io::load_reader(&b"not numpy"[..]).is_err());
        assert!(io::load_safetensors(&garbage_st).is_err());
        assert!(io::load_gguf(&garbage_path).is_err());
        assert!(io::load("/nonexistent/x.npy").is_err());
        // Saves.
        drop(io::save_safetensors_writer([("w", &w)], [("k", "v")]).unwrap());
        drop(io::save_writer(&w).unwrap());
    });
}

#[test]
fn a_fixed_set_of_threads_with_their_own_streams() {
    let _turn = turn();
    // Worker threads that live for the whole workload, each with its own stream, as a
    // thread pool would run them; the meters are read while they wait at a barrier.
    const WORKERS: usize = 4;
    const ROUNDS: usize = 500;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(WORKERS + 1));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let barrier = std::sync::Arc::clone(&barrier);
            std::thread::spawn(move || {
                let s = mlx_rs::Stream::new(&mlx_rs::Device::cpu());
                let round = |i: usize| {
                    let x = (w * ROUNDS + i) as f32;
                    let y = s
                        .scope(|| f32s(&[x, 1.0], &[2]).square().unwrap().sum(false))
                        .unwrap();
                    assert_eq!(y.item::<f32>().unwrap(), x * x + 1.0);
                };
                round(0);
                round(1);
                s.synchronize().unwrap();
                barrier.wait(); // warmed up
                barrier.wait(); // meters read
                for i in 0..ROUNDS {
                    round(i);
                }
                s.synchronize().unwrap();
                barrier.wait(); // done
                barrier.wait(); // meters read again
            })
        })
        .collect();
    barrier.wait();
    let before = read();
    barrier.wait();
    barrier.wait();
    let after = read();
    barrier.wait();
    for w in workers {
        w.join().unwrap();
    }
    eprintln!("worker threads: before {before:?}, after {after:?}");
    assert_eq!(after.active, before.active);
    assert_eq!(after.rust, before.rust);
    assert!(after.heap <= before.heap + HEAP_SLACK);
}

fn os_threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// MLX 0.32 starts an OS thread per CPU stream and never ends it, and gives every thread
/// that runs an op its own default stream. mlx-rs leases streams from a pool instead
/// (`mlx_rs::stream` module docs): threads spawned one per task, streams made one per
/// call and `ThreadLocalStream`s used by short-lived threads must not grow the process.
#[test]
fn short_lived_threads_and_streams_reuse_mlx_workers() {
    let _turn = turn();
    let task = |i: usize| {
        let y = f32s(&[i as f32, 1.0], &[2])
            .square()
            .unwrap()
            .sum(false)
            .unwrap();
        y.item::<f32>().unwrap()
    };
    let tls = std::sync::Arc::new(mlx_rs::ThreadLocalStream::new(&Device::cpu()));
    let spawn_one = |i: usize| {
        let tls = std::sync::Arc::clone(&tls);
        std::thread::spawn(move || {
            let mut v = task(i);
            let own = Stream::new(&Device::cpu());
            v += own.scope(|| task(i));
            v += tls.get().unwrap().scope(|| task(i));
            v
        })
    };
    for i in 0..4 {
        spawn_one(i).join().unwrap();
    }
    settle();
    // MLX's own default GPU stream of each thread is not pooled (a GPU stream belongs to
    // its thread; its encoder goes when the thread exits): count CPU streams.
    let cpu_streams = || {
        mlx_rs::streams()
            .unwrap()
            .iter()
            .filter(|s| s.device().unwrap() == Device::cpu())
            .count()
    };
    let (threads, streams, made, heap) = (
        os_threads(),
        cpu_streams(),
        mlx_rs::cpu_streams_made(),
        heap_in_use(),
    );
    let n = 1000;
    for i in 0..n {
        let v = spawn_one(i).join().unwrap();
        assert_eq!(v, 3.0 * (i as f32 * i as f32 + 1.0));
    }
    // Eight at a time: at most eight threads' streams are leased at once.
    for round in 0..25 {
        let group: Vec<_> = (0..8).map(|i| spawn_one(round * 8 + i)).collect();
        for h in group {
            h.join().unwrap();
        }
    }
    // One long-lived thread making a stream per call.
    for i in 0..2000 {
        let s = Stream::new(&Device::cpu());
        assert_eq!(s.scope(|| task(i)), i as f32 * i as f32 + 1.0);
    }
    settle();
    let grown = os_threads().saturating_sub(threads);
    let new_streams = cpu_streams() - streams;
    let new_made = mlx_rs::cpu_streams_made() - made;
    let per_thread = (heap_in_use() as isize - heap as isize) / (n + 200) as isize;
    eprintln!(
        "{} threads and 2000 streams: {grown} more OS threads, {new_streams} more MLX CPU \
         streams ({new_made} pooled), {per_thread} bytes of heap per thread",
        n + 200
    );
    // Eight concurrent threads hold three streams each (default, own, thread-local).
    assert!(
        new_made <= 24,
        "{new_made} CPU streams made for 1,200 threads"
    );
    assert!(new_streams <= 24, "{new_streams} MLX CPU streams made");
    // Those streams' workers, plus the test runner's own threads that come and go.
    assert!(grown <= 40, "{grown} more OS threads");
    assert!(
        per_thread < 4 << 10,
        "{per_thread} bytes of heap per thread"
    );
}

/// Replays a fuzz corpus (`LEAKS_CORPUS=fuzz/corpus/<target>`, `<target>` one of
/// `safetensors`, `npy`, `gguf`) through the same loaders, many times, and checks the
/// meters: the fuzz inputs reach error paths the other tests do not.
#[test]
#[ignore = "needs LEAKS_CORPUS=<a fuzz corpus folder>"]
fn replay_fuzz_corpus() {
    let _turn = turn();
    let Some(dir) = std::env::var_os("LEAKS_CORPUS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let kind = dir.file_name().unwrap().to_string_lossy().into_owned();
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    inputs.sort();
    let path = scratch("replay.bin");
    let run = |data: &[u8]| {
        let arrays: Vec<Array> = match kind.as_str() {
            "safetensors" => io::load_safetensors_reader(data)
                .map(|s| s.arrays.into_values().collect())
                .unwrap_or_default(),
            "npy" => io::load_reader(data).into_iter().collect(),
            "gguf" => {
                std::fs::write(&path, data).unwrap();
                io::load_gguf(&path)
                    .map(|g| g.arrays.into_values().collect())
                    .unwrap_or_default()
            }
            other => panic!("no replay for {other}"),
        };
        for a in arrays {
            let _ = a.eval();
        }
    };
    let rounds = 20;
    no_leak(
        &format!("replay {kind} ({} inputs)", inputs.len()),
        rounds,
        |_| {
            for data in &inputs {
                run(data);
            }
        },
    );
}
