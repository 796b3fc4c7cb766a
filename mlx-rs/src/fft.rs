//! Fast Fourier transforms.
