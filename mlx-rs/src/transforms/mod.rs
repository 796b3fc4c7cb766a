//! Function transformations: grad, vjp, jvp, vmap, compile, custom functions.
