// Slots of the int64 control array every recorded step reads and writes on the device
// (gpunn.step.CTRL_* name the same slots; a test checks they agree).
#pragma once

#define GPUNN_CTRL_T 0           // optimizer updates applied so far; this step's update is t + 1
#define GPUNN_CTRL_K 1           // index of this step within the epoch (lr table, batch, record)
#define GPUNN_CTRL_BAD 2         // this step's loss or gradient is not finite: skip its update
#define GPUNN_CTRL_BAD_UPDATE 3  // this step's update would have made a value non-finite
#define GPUNN_CTRL_HALT 4        // apply no more updates (training diverged)
#define GPUNN_CTRL_SIZE 8

// Step statuses in the record (as reals): applied, skipped (non-finite loss or gradient),
// applied except where it would have made a value non-finite, not run (halted before it).
#define GPUNN_STEP_APPLIED 0
#define GPUNN_STEP_NONFINITE 1
#define GPUNN_STEP_BAD_UPDATE 2
#define GPUNN_STEP_HALTED 3

// Whether an update kernel must leave everything untouched this step.
#define GPUNN_UPDATE_SKIPPED(ctrl) ((ctrl)[GPUNN_CTRL_BAD] != 0 || (ctrl)[GPUNN_CTRL_HALT] != 0)
