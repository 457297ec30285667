// Test entry point: selects the OpenBLAS kernels like the CLI does, then runs GoogleTest.
#include <gtest/gtest.h>

#include "candor/runtime.h"

int main(int argc, char** argv) {
  candor::prepare_process(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
