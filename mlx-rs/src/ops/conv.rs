//! Convolutions and windows.
