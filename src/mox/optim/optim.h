#pragma once
// The optimisation room in one include: optimisers, LR schedules, clipping, penalties.
#include "mox/optim/adagrad.h"
#include "mox/optim/adam.h"
#include "mox/optim/clip.h"
#include "mox/optim/grad_scaler.h"
#include "mox/optim/optimizer.h"
#include "mox/optim/regularizers.h"
#include "mox/optim/rmsprop.h"
#include "mox/optim/schedulers.h"
#include "mox/optim/sgd.h"
#include "mox/optim/state_dict.h"
