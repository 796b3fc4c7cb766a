//! Reductions (sum, mean, max, …), arg-reductions, cumulative ops, softmax and logsumexp.
