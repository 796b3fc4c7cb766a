//! Exporting and importing functions.
