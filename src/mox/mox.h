#pragma once
// Everything a user of the C++ API needs: #include "mox/mox.h".
#include "mox/autograd/node.h"
#include "mox/backend/backend.h"
#include "mox/ops/ops.h"
#include "mox/tensor/generator.h"
#include "mox/tensor/tensor.h"
