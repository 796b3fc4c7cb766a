//! Gather/scatter style ops: take, slice, slice updates, scatter, put/take along axis, masked scatter.
