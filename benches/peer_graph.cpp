// C++ peer of examples/bench_graph.rs: the cost of building and evaluating graphs of many
// small element-wise ops through MLX's own C++ API, the floor that any binding (Rust's or
// Python's) adds its cost to.
//
// Builds, for each chain length N and shape, the chain x -> x*a -> x+b -> x^2 -> sqrt(x)
// -> x*a ... (N ops) on the default stream, times building the graph and evaluating it
// separately (warm-up runs first) and prints one JSON object on stdout, as
// benches/peer_graph.py does:
//
//     {"mlx_version": "...", "device": "...", "results": [
//         {"n": 10, "shape": [16], "build_samples": [...], "eval_samples": [...]}, ...]}
//
// (every timed sample, in microseconds). bench_graph compiles it against the MLX that
// mlx-sys links and runs it; by hand:
//
//     c++ -O2 -std=c++20 -I MLX/include benches/peer_graph.cpp -L MLX/lib -lmlx \
//         -Wl,-rpath,MLX/lib -o peer_graph
//     ./peer_graph --lengths 10,100,1000 --shapes 16,256x256 --reps 11 --warmup 3
#include <mlx/mlx.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace mx = mlx::core;

namespace {

mx::array chain(mx::array x, int n, const mx::array& a, const mx::array& b) {
  for (int i = 0; i < n; i++) {
    switch (i % 4) {
      case 0:
        x = mx::multiply(x, a);
        break;
      case 1:
        x = mx::add(x, b);
        break;
      case 2:
        x = mx::square(x);
        break;
      default:
        x = mx::sqrt(x);
    }
  }
  return x;
}

std::vector<int> split_ints(const std::string& s, char sep) {
  std::vector<int> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep)) {
    out.push_back(std::stoi(item));
  }
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep)) {
    out.push_back(item);
  }
  return out;
}

void print_list(const std::vector<double>& v) {
  std::printf("[");
  for (size_t i = 0; i < v.size(); i++) {
    std::printf(i ? ", %.3f" : "%.3f", v[i]);
  }
  std::printf("]");
}

}  // namespace

int main(int argc, char** argv) {
  std::string lengths = "10,100,1000", shapes = "16,256x256", device;
  int reps = 21, warmup = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--lengths") {
      lengths = value;
    } else if (flag == "--shapes") {
      shapes = value;
    } else if (flag == "--reps") {
      reps = std::stoi(value);
    } else if (flag == "--warmup") {
      warmup = std::stoi(value);
    } else if (flag == "--device") {
      device = value;
    } else {
      std::fprintf(stderr, "unknown argument %s\n", flag.c_str());
      return 2;
    }
  }
  try {
    if (device == "cpu") {
      mx::set_default_device(mx::Device::cpu);
    } else if (device == "gpu") {
      mx::set_default_device(mx::Device::gpu);
    }
    auto dev = mx::default_device();
    std::printf("{\"mlx_version\": \"%s\", \"device\": \"Device(%s, %d)\", \"results\": [",
                mx::version(), dev.type == mx::Device::cpu ? "cpu" : "gpu",
                dev.index);
    bool first = true;
    for (const auto& shape_s : split(shapes, ',')) {
      auto shape = split_ints(shape_s, 'x');
      for (int n : split_ints(lengths, ',')) {
        mx::array a(0.999f), b(0.001f);
        auto x0 = mx::full(mx::Shape(shape.begin(), shape.end()), 0.5f, mx::float32);
        mx::eval({x0, a, b});
        std::vector<double> builds, evals;
        for (int r = 0; r < warmup + reps; r++) {
          auto t0 = std::chrono::steady_clock::now();
          auto y = chain(x0, n, a, b);
          auto t1 = std::chrono::steady_clock::now();
          mx::eval({y});
          auto t2 = std::chrono::steady_clock::now();
          if (r >= warmup) {
            builds.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
            evals.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
          }
        }
        std::printf("%s{\"n\": %d, \"shape\": [", first ? "" : ", ", n);
        for (size_t i = 0; i < shape.size(); i++) {
          std::printf(i ? ", %d" : "%d", shape[i]);
        }
        std::printf("], \"build_samples\": ");
        print_list(builds);
        std::printf(", \"eval_samples\": ");
        print_list(evals);
        std::printf("}");
        first = false;
      }
    }
    std::printf("]}\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
