//! Every pinned version and checksum in one place.

/// The MLX release mlx-c 0.7.0 is written against; headers and library must match it.
pub const MLX_VERSION: &str = "0.32.2";

/// The mlx-c release these bindings were generated from.
pub const MLX_C_VERSION: &str = "0.7.0";

/// The crates.io package that carries the mlx-c source (in its `src/mlx-c/` folder).
pub const MLX_C_CRATE: &str = "mlx-sys";
/// Its version: the one that ships mlx-c 0.7.0.
pub const MLX_C_CRATE_VERSION: &str = "0.7.0";
/// The `.crate` checksum crates.io's index records for it (cargo verifies the download).
pub const MLX_C_CRATE_SHA256: &str =
    "da965f83ce211b80f9b681d9bbd6fa625fe6bb2e659ba7bc55dd95eea8d3b028";
/// Our own checksum over the mlx-c tree (sorted relative paths and contents).
pub const MLX_C_TREE_SHA256: &str =
    "556225629a11774eac79b8d8e9ab712146cba58a2408a1dec6dca91242b5f293";

/// CMake from PyPI, used only when no `cmake` is on `PATH`.
pub const CMAKE_PYPI_VERSION: &str = "3.31.10";

/// A prebuilt MLX wheel on PyPI: the distribution and the sha256 of every wheel of it
/// that a supported target may download.
pub struct Wheel {
    /// The PyPI distribution name.
    pub dist: &'static str,
    /// sha256 of each platform's wheel file of the pinned version.
    pub sha256: &'static [&'static str],
}

/// Linux CPU backend (ships its own BLAS/LAPACK).
pub const MLX_CPU: Wheel = Wheel {
    dist: "mlx-cpu",
    sha256: &[
        // manylinux_2_35_x86_64
        "fc5d31b90fc4f457b2f9614ed45651a567d22a6a11a03d114a90a4e10bdd8878",
        // manylinux_2_35_aarch64
        "d0f94625588b51a878786dd51cec5617894ce586cf3c94645ce1b64e24c27c0b",
    ],
};

/// Linux CUDA 13 backend (the library only: headers come from `MLX_CPU`).
pub const MLX_CUDA: Wheel = Wheel {
    dist: "mlx-cuda-13",
    sha256: &[
        // manylinux_2_35_x86_64
        "335094ccd1c0c6dc3e09c8caba207c8180602bacc0c38ba20c1d81e9456ab394",
        // manylinux_2_35_aarch64
        "49b1a25df9021f3b519a534fd39a32a5cdbf93a1b265a31e59671c2d9fc9f4a2",
    ],
};

/// macOS Metal backend (Apple silicon).
pub const MLX_METAL: Wheel = Wheel {
    dist: "mlx-metal",
    sha256: &[
        // macosx_14_0_arm64
        "3825fff379dbc107dd3413e564a06caeaa24819910ec49c0439e454c06a1b9b8",
        // macosx_15_0_arm64
        "55a369250d220b2cf10213a87a2ac1b1a420608c5b35b1df4e7147ac8e32f121",
        // macosx_26_0_arm64
        "e6abeac9ac5265830c9c1541b6f96e9be37a85c2446763a46ad466c63a3837ab",
    ],
};
