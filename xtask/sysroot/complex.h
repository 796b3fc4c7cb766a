/* Minimal <complex.h> for bindings generation (see stddef.h). */
