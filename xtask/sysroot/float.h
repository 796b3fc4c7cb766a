/* Minimal <float.h> for bindings generation (see stddef.h). */
