//! `std::ops` operators for arrays and scalars.
