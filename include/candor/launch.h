// The start-up environment of the engine, shared by candor_core's prepare_process and the
// `candor` launcher (tools/launcher), which links no libtorch: header-only, libc only.
//
// OpenBLAS reads OPENBLAS_CORETYPE once, when it is loaded, so the variable must be set before
// the process that loads it starts: the launcher sets it and execs the engine (one load of the
// libraries); an engine started directly re-executes itself once (two loads).
#pragma once

#include <cstdlib>
#include <string>

namespace candor {

// Set (to "1") in the environment of an engine whose environment is already prepared: it does
// not re-execute itself.
inline constexpr const char* kPreparedMarker = "CANDOR_BLAS_REEXEC";

// The OpenBLAS core this CPU should use: "SkylakeX" (AVX-512), "Haswell" (AVX2+FMA), or ""
// (leave OpenBLAS's own detection alone).
inline std::string openblas_core_for_this_cpu() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return "";
}

// Sets what the user has not set: OPENBLAS_CORETYPE for this CPU, and OMP_WAIT_POLICY=PASSIVE
// (idle OpenMP workers of libtorch otherwise spin against OpenBLAS's own threads). Never
// overrides a value the user set. Returns whether it set anything.
inline bool set_engine_environment() {
  bool changed = false;
  if (std::getenv("OPENBLAS_CORETYPE") == nullptr) {
    const std::string core = openblas_core_for_this_cpu();
    if (!core.empty()) {
      setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
      changed = true;
    }
  }
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    changed = true;
  }
  return changed;
}

}  // namespace candor
