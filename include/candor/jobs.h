// candor's jobs: explain, evaluate and generate as the CLI, the service and the bindings run
// them. See jobs_common.h (errors, model source), jobs_explain.h, jobs_evaluate.h (with the
// RecordStore interface) and jobs_generate.h.
#pragma once

#include "candor/jobs_common.h"
#include "candor/jobs_evaluate.h"
#include "candor/jobs_explain.h"
#include "candor/jobs_generate.h"
#include "candor/jobs_temperature.h"
