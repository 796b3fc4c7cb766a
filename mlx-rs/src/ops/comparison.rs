//! Comparisons, predicates (isnan, isclose, …) and `where`.
