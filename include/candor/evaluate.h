// The evaluator: how true an attribution is to the model (faithfulness), how stable it is under
// small input changes (robustness), whether it depends on the model at all (sanity checks), and
// whether it can be told apart from explanations made to mislead (decoys, attacks, consensus).
//
// Every metric explains the scalar f = the sum over the attribution's steps of the target
// function (log p of the explained token by default), and reads an attribution's per-feature
// scores summed over steps (Attribution::total()). Masked inputs are scored in batches that reuse
// the KV cache of the unchanged prefix; identical masks are scored once.
//
// Umbrella header: each part has its own header under candor/evaluate/.
#pragma once

#include "candor/evaluate/adversarial.h"
#include "candor/evaluate/benchmark.h"
#include "candor/evaluate/faithfulness.h"
#include "candor/evaluate/quality.h"
#include "candor/evaluate/robustness.h"
#include "candor/evaluate/sanity.h"
#include "candor/evaluate/stats.h"
