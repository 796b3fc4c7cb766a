//! Every function of the mlx-c headers this crate wraps is reachable from the safe API:
//! its FFI name appears in a call in `mlx-rs/src`, or it is listed, with the reason, under
//! "Deliberate exceptions" in the crate docs (`src/lib.rs`).

use std::collections::BTreeSet;
use std::path::Path;

/// Function names declared in one mlx-c header.
fn header_functions(header: &str) -> Vec<String> {
    let path = Path::new(env!("MLX_RS_MLXC_INCLUDE"))
        .join("mlx")
        .join("c")
        .join(header);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut names = Vec::new();
    // Declarations start at column 0: `<return type> mlx_name(`.
    for line in text.lines() {
        if line.starts_with(' ')
            || line.starts_with('#')
            || line.starts_with('*')
            || line.starts_with('/')
        {
            continue;
        }
        if let Some(open) = line.find('(') {
            let head = &line[..open];
            if let Some(name) = head.split_whitespace().last() {
                let name = name.trim_start_matches('*');
                if (name.starts_with("mlx_") || name.starts_with("_mlx_"))
                    && !head.contains("typedef")
                {
                    names.push(name.to_string());
                }
            }
        }
    }
    names
}

/// All Rust code of the crate (comment lines dropped), concatenated.
fn crate_source() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                for line in std::fs::read_to_string(&p).unwrap().lines() {
                    if !line.trim_start().starts_with("//") {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
            }
        }
    }
    let mut s = String::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut s);
    s
}

/// Whether `name` occurs in `src` as a whole identifier.
fn mentions(src: &str, name: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    src.match_indices(name).any(|(i, _)| {
        let before = src[..i].chars().next_back();
        let after = src[i + name.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// The names (or `prefix*` patterns) listed under "Deliberate exceptions" in lib.rs.
fn exceptions() -> Vec<String> {
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let section = lib
        .split("# Deliberate exceptions")
        .nth(1)
        .expect("lib.rs has a '# Deliberate exceptions' section");
    section
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("//!") && !l.starts_with("//! #"))
        .flat_map(|l| {
            l.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|n| n.starts_with("mlx_") || n.starts_with("_mlx_"))
        .collect()
}

fn missing(headers: &[&str]) -> BTreeSet<String> {
    let src = crate_source();
    let exc = exceptions();
    let excepted = |name: &str| {
        exc.iter().any(|e| match e.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => e == name,
        })
    };
    headers
        .iter()
        .flat_map(|h| header_functions(h))
        .filter(|name| !mentions(&src, name) && !excepted(name))
        .collect()
}

#[test]
fn core_headers_are_covered() {
    let headers = [
        "array.h", "device.h", "stream.h", "ops.h", "random.h", "fft.h", "linalg.h", "io.h",
        "memory.h",
    ];
    let total: usize = headers.iter().map(|h| header_functions(h).len()).sum();
    assert!(
        total > 400,
        "parsed only {total} functions: the header parser is broken"
    );
    let missing = missing(&headers);
    assert!(
        missing.is_empty(),
        "{} functions not reachable: {missing:?}",
        missing.len()
    );
}

#[test]
fn distributed_headers_are_covered() {
    let headers = ["distributed.h", "distributed_group.h"];
    let total: usize = headers.iter().map(|h| header_functions(h).len()).sum();
    assert!(
        total >= 15,
        "parsed only {total} functions: the header parser is broken"
    );
    let missing = missing(&headers);
    assert!(
        missing.is_empty(),
        "{} functions not reachable: {missing:?}",
        missing.len()
    );
}

#[test]
fn transform_headers_are_covered() {
    let headers = [
        "transforms.h",
        "transforms_impl.h",
        "compile.h",
        "closure.h",
        "fast.h",
        "export.h",
    ];
    let missing = missing(&headers);
    assert!(
        missing.is_empty(),
        "{} functions not reachable: {missing:?}",
        missing.len()
    );
}
