// `candor methods`: the registered attribution methods with their options and defaults.
#include <iostream>

#include "candor/explain.h"
#include "cli.h"

namespace candor::cli {

Runner add_methods(CLI::App& app) {
  (void)app;
  return []() {
    for (const auto& e : list_explainers()) {
      std::cout << e.name << "\n    " << e.description << "\n";
      if (!e.defaults.empty()) {
        std::cout << "    options:";
        for (const auto& [k, v] : e.defaults) std::cout << " " << k << "=" << v;
        std::cout << "\n";
      }
    }
    return 0;
  };
}

}  // namespace candor::cli
