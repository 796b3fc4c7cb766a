// Sum over the 32 lanes of a SIMD group (every lane gets the total).
inline float gdn_lane_sum(float x) {
  return metal::simd_sum(x);
}
