/* Force-included into every mlx-c translation unit by mlx-sys's build script.
 *
 * mlx-c 0.7.0 formats a few error messages with std::format, which libstdc++ only ships
 * from GCC 13 on. When the standard library lacks it, this header supplies a minimal
 * std::format that understands the plain "{}" placeholder, the only form mlx-c uses.
 * With a standard library that has <format>, it does nothing.
 */
#ifndef MLX_SYS_FORMAT_SHIM_H
#define MLX_SYS_FORMAT_SHIM_H

/* Also: mlx-c reports every caught exception with `mlx_error(e.what())`, and `mlx_error` is
 * printf-style, so the message is used as the *format*. A message that contains `%` (a
 * file name, a tensor name, or the bytes of a corrupt file that MLX quotes) makes
 * vsnprintf read arguments that were never passed, or with `%n` write through them: a
 * crafted safetensors header crashed the process this way (found by fuzzing). mlx-c's
 * error.h is included here first and its macro redefined, so that the message is always
 * the argument of a "%s" format. Every mlx-c call site passes exactly one argument.
 * (CMake's compiler checks get this header too, without mlx-c's include path: hence
 * `__has_include`.)
 */
#if defined(__has_include)
#if __has_include("mlx/c/error.h")
#include "mlx/c/error.h"
#undef mlx_error
#define mlx_error(...) _mlx_error(__FILE__, __LINE__, "%s", __VA_ARGS__)
#endif
#endif
#ifdef __cplusplus
#include <version>
#ifndef __cpp_lib_format
#include <sstream>
#include <string>
#include <string_view>

namespace mlx_sys_shim {
inline void format_rest(std::ostringstream& out, std::string_view fmt) {
  out << fmt;
}
template <typename T, typename... Rest>
void format_rest(std::ostringstream& out, std::string_view fmt, const T& value,
                 const Rest&... rest) {
  auto at = fmt.find("{}");
  if (at == std::string_view::npos) {
    out << fmt;
    return;
  }
  out << fmt.substr(0, at) << value;
  format_rest(out, fmt.substr(at + 2), rest...);
}
} // namespace mlx_sys_shim

namespace std {
template <typename... Args>
std::string format(std::string_view fmt, const Args&... args) {
  std::ostringstream out;
  mlx_sys_shim::format_rest(out, fmt, args...);
  return out.str();
}
} // namespace std
#endif
#endif
#endif
