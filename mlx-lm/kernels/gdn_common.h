// Value helpers shared by the CUDA and Metal kernels. The backend header defines GDN_FN
// (function qualifiers), gdn_exp, gdn_log, gdn_rsqrt and gdn_lane_sum before this.

// Rounds to T and back: the rounding MLX applies after each op whose result has dtype T.
template <typename T>
GDN_FN float gdn_round(float x) {
  return static_cast<float>(static_cast<T>(x));
}

GDN_FN float gdn_sigmoid(float x) {
  return 1.0f / (1.0f + gdn_exp(-x));
}

// log(1 + exp(x)) = logaddexp(x, 0), overflow-free.
GDN_FN float gdn_softplus(float x) {
  const float m = x > 0.0f ? x : 0.0f;
  const float d = x > 0.0f ? -x : x;
  return m + gdn_log(1.0f + gdn_exp(d));
}

// SiLU of a value held in dtype T, as MLX's x * sigmoid(x) on T arrays (two roundings).
template <typename T>
GDN_FN float gdn_silu(float x) {
  return gdn_round<T>(x * gdn_round<T>(gdn_sigmoid(x)));
}
