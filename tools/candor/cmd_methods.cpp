// `candor methods`: the registered attribution methods with their options and defaults (text),
// or their typed option declarations (--json).
#include <iostream>
#include <memory>

#include "candor/explain.h"
#include "cli.h"

namespace candor::cli {

Runner add_methods(CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  app.add_flag("--json", *json,
               "Print the methods as JSON: name, description and each option's type, default, "
               "bounds or choices and description");
  return [json]() {
    if (*json) {
      std::cout << explainers_to_json().dump(2) << "\n";
      return 0;
    }
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
