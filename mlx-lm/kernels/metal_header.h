#define GDN_FN inline

GDN_FN float gdn_exp(float x) {
  return metal::precise::exp(x);
}

GDN_FN float gdn_log(float x) {
  return metal::precise::log(x);
}

GDN_FN float gdn_rsqrt(float x) {
  return metal::precise::rsqrt(x);
}

// The float whose bits are `bits` (a float passed as an int template constant).
GDN_FN float gdn_float_from_bits(int bits) {
  return as_type<float>(bits);
}

// Sum over the 32 lanes of a SIMD group (every lane gets the total).
GDN_FN float gdn_lane_sum(float x) {
  return metal::simd_sum(x);
}

// Thread-group storage and the thread-group barrier (the step kernel's staging).
#define GDN_SHARED threadgroup
GDN_FN void gdn_barrier() {
  metal::threadgroup_barrier(metal::mem_flags::mem_threadgroup);
}
