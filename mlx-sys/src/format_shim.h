/* Force-included into every mlx-c translation unit by mlx-sys's build script.
 *
 * mlx-c 0.7.0 formats a few error messages with std::format, which libstdc++ only ships
 * from GCC 13 on. When the standard library lacks it, this header supplies a minimal
 * std::format that understands the plain "{}" placeholder, the only form mlx-c uses.
 * With a standard library that has <format>, it does nothing.
 */
#ifndef MLX_SYS_FORMAT_SHIM_H
#define MLX_SYS_FORMAT_SHIM_H
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
