// Guarded streaming: which checks a streamed answer must wait for (the plan), and the guard that
// holds back a window of the answer so that a blocked term or pattern is never released, and a
// redacted one is released redacted (docs/serve.md#guarded-streaming).
#include <algorithm>

#include "candor/error.h"
#include "candor/supervise.h"
#include "supervise/internal.h"

namespace candor::supervise {

const char* stream_mode_name(StreamMode mode) {
  switch (mode) {
    case StreamMode::kLive:
      return "live";
    case StreamMode::kWindowed:
      return "windowed";
    case StreamMode::kBuffered:
      return "buffered";
  }
  return "buffered";
}

nlohmann::json StreamPlan::to_json() const {
  nlohmann::json j = {{"mode", stream_mode_name(mode)}, {"reasons", reasons}};
  if (mode == StreamMode::kWindowed) j["window_bytes"] = window;
  return j;
}

namespace {

bool rewrites(Action a) {
  return a == Action::kBlock || a == Action::kRedact || a == Action::kRegenerate;
}

// A blocked_terms check the guard can judge on a prefix: terms, and patterns only with max_match.
bool windowable(const CheckSpec& spec) {
  if (spec.type != "blocked_terms") return false;
  const bool patterns = spec.params.contains("patterns") && !spec.params["patterns"].empty();
  return !patterns || spec.params.contains("max_match");
}

size_t max_match_of(const CheckSpec& spec) {
  if (!spec.params.contains("max_match")) return 0;
  const auto& v = spec.params["max_match"];
  return v.is_number_integer() && v.get<int64_t>() > 0 ? static_cast<size_t>(v.get<int64_t>())
                                                        : 0;
}

}  // namespace

StreamPlan plan_stream(const Policy& policy) {
  StreamPlan plan;
  bool buffered = false, windowed = false;
  for (const CheckSpec& spec : policy.checks) {
    if (spec.async || !rewrites(spec.on_fail)) continue;
    const std::string who = "check '" + spec.name + "' (" + spec.type + ", on_fail " +
                            action_name(spec.on_fail) + ")";
    if (spec.on_fail == Action::kRegenerate) {
      buffered = true;
      plan.reasons.push_back(who + " may discard the whole answer: held until the checks decide");
    } else if (spec.type != "blocked_terms") {
      buffered = true;
      plan.reasons.push_back(who + " needs the whole answer: held until the checks decide");
    } else if (!windowable(spec)) {
      buffered = true;
      plan.reasons.push_back(who + " has patterns without max_match: held until the checks decide");
    } else {
      windowed = true;
      size_t longest = 0;
      if (spec.params.contains("terms"))
        for (const auto& t : spec.params["terms"])
          if (t.is_string()) longest = std::max(longest, t.get<std::string>().size());
      const size_t m = max_match_of(spec);
      const size_t w = std::max(longest, m > 0 ? m + 1 : 0);
      plan.window = std::max(plan.window, w);
      plan.reasons.push_back(who + ": the last " + std::to_string(w) +
                             " bytes are held back until no match can reach them");
    }
  }
  plan.mode = buffered ? StreamMode::kBuffered
                       : windowed ? StreamMode::kWindowed : StreamMode::kLive;
  if (plan.mode != StreamMode::kWindowed) plan.window = 0;
  return plan;
}

struct StreamGuard::Watched {
  std::string name;
  BlockedMatcher matcher;
  bool block = false;     // else redact
  size_t max_match = 0;   // patterns' bound (bytes)
  Watched(std::string n, const nlohmann::json& params, bool b, size_t m)
      : name(std::move(n)), matcher(params), block(b), max_match(m) {}
};

StreamGuard::StreamGuard(const Policy& policy) : plan_(plan_stream(policy)) {
  for (const CheckSpec& spec : policy.checks) {
    if (spec.async || !windowable(spec)) continue;
    const bool block = spec.on_fail == Action::kBlock;
    // Redaction is applied here only when the guard releases text itself (windowed).
    if (!block && !(spec.on_fail == Action::kRedact && plan_.mode == StreamMode::kWindowed))
      continue;
    try {
      watched_.push_back(std::make_shared<const Watched>(spec.name, spec.params, block,
                                                         max_match_of(spec)));
    } catch (const Error&) {
      // A check whose params are bad errors in the review (outcome "error"), never here.
    }
  }
}

std::string StreamGuard::push(const std::string& piece) {
  if (blocked_ || finished_) return {};
  text_ += piece;
  if (plan_.mode == StreamMode::kLive) {
    consumed_ = text_.size();
    released_ += piece;
    return piece;
  }
  return advance(false);
}

std::string StreamGuard::finish() {
  if (blocked_ || finished_) return {};
  std::string out = plan_.mode == StreamMode::kLive ? std::string() : advance(true);
  finished_ = true;
  return out;
}

std::string StreamGuard::advance(bool final) {
  const size_t n = text_.size();
  std::vector<std::pair<size_t, size_t>> masked;
  for (const auto& w : watched_) {
    for (const BlockedMatch& m : w->matcher.find(text_)) {
      if (w->block) {
        // Complete when nothing after it can change it: a term's boundary byte is known, a
        // pattern has seen max_match bytes past its start.
        const bool complete = final || (m.pattern ? m.begin + w->max_match < n : m.end < n);
        if (!complete) continue;
        blocked_ = true;
        block_reason_ = "check '" + w->name + "' matched '" + text_.substr(m.begin, m.end - m.begin) +
                        "' at byte " + std::to_string(m.begin) + " of the streamed answer";
        return {};
      }
      masked.emplace_back(m.begin, m.end);
    }
  }
  if (plan_.mode == StreamMode::kBuffered) return {};
  size_t to = final ? n : (n > plan_.window ? n - plan_.window : 0);
  std::sort(masked.begin(), masked.end());
  // Merged spans, as mask_spans merges them.
  std::vector<std::pair<size_t, size_t>> merged;
  for (const auto& s : masked) {
    if (!merged.empty() && s.first < merged.back().second)
      merged.back().second = std::max(merged.back().second, s.second);
    else
      merged.push_back(s);
  }
  // Never cut inside a match, nor inside a UTF-8 character.
  for (bool moved = true; moved && to > consumed_;) {
    moved = false;
    for (const auto& s : merged)
      if (s.first < to && to < s.second) {
        to = s.first;
        moved = true;
      }
    while (to > consumed_ && to < n && (static_cast<unsigned char>(text_[to]) & 0xC0) == 0x80) {
      --to;
      moved = true;
    }
  }
  if (to <= consumed_) return {};
  std::string out;
  size_t at = consumed_;
  for (const auto& s : merged) {
    if (s.second <= consumed_ || s.first >= to) continue;
    // A match reaching back before what was released (a pattern longer than its max_match):
    // mask what is left of it.
    const size_t b = std::max(s.first, at);
    out += text_.substr(at, b - at) + "[redacted]";
    at = std::max(at, s.second);
  }
  if (at < to) out += text_.substr(at, to - at);
  consumed_ = std::max(to, at);
  released_ += out;
  return out;
}

}  // namespace candor::supervise
