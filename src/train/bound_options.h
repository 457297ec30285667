// Declared options bound to the fields of a settings struct: one table gives each option's
// declaration (name, type, default, bounds, description: candor/options.h) and the field it sets,
// so a spec parser is the table plus its cross-checks. Internal header of candor_train.
#pragma once

#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "candor/options.h"

namespace candor::train {

template <typename S>
struct BoundOption {
  OptionSpec spec;
  std::function<void(const Options&, S*)> set;  // the checked value into its field
  bool only_when_given = false;                 // leave the field as it is unless given
};

// Binds `spec` to `field` of S (an integer, floating-point or string member).
template <typename S, typename T>
BoundOption<S> bind_option(OptionSpec spec, T S::*field, bool only_when_given = false) {
  const std::string key = spec.name;
  auto set = [key, field](const Options& o, S* s) {
    if constexpr (std::is_same_v<T, std::string>) {
      s->*field = o.get(key);
    } else if constexpr (std::is_floating_point_v<T>) {
      s->*field = static_cast<T>(o.get_double(key));
    } else {
      s->*field = static_cast<T>(o.get_int(key));
    }
  };
  return {std::move(spec), set, only_when_given};
}

template <typename S>
OptionSpecs declarations(const std::vector<BoundOption<S>>& bound) {
  OptionSpecs specs;
  for (const BoundOption<S>& b : bound) specs.push_back(b.spec);
  return specs;
}

// Sets the fields of `s` from `o` (parsed against declarations(bound)).
template <typename S>
void apply_options(const std::vector<BoundOption<S>>& bound, const Options& o, S* s) {
  for (const BoundOption<S>& b : bound)
    if (!b.only_when_given || o.given(b.spec.name)) b.set(o, s);
}

}  // namespace candor::train
