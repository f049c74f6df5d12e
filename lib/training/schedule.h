// schedule: the learning rate at each step, as in SimCLR's reference code
// (model_util.learning_rate_schedule): the base rate scaled by the batch size,
// a linear warmup from 0, then a cosine decay to 0 at the last step.
//
//     peak   = base * batch / 256       (linear scaling)
//            = base * sqrt(batch)        (square-root scaling)
//     warmup = floor(warmup_epochs * examples / batch)   steps
//     total  = examples * epochs / batch + 1             steps (integer division)
//     lr(t)  = peak * t / warmup                         for t < warmup
//            = peak * (1 + cos(pi * min(t - warmup, total - warmup)
//                              / (total - warmup))) / 2   otherwise
//
// t is the number of steps already taken (0 for the first update, so the
// first update of a warmup has rate 0, as in the reference).
#ifndef MEDSSL_SCHEDULE_H
#define MEDSSL_SCHEDULE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum { LR_SCALING_LINEAR, LR_SCALING_SQRT } lr_scaling;

// "linear", "sqrt"; false for anything else.
bool lr_scaling_parse(const char *name, lr_scaling *out);
const char *lr_scaling_name(lr_scaling s);
double lr_scaled(double base_lr, int64_t batch, lr_scaling scaling);

typedef struct {
    double peak_lr;        // the scaled rate, reached at the end of the warmup
    int64_t warmup_steps;
    int64_t total_steps;   // a caller may set it (SimCLR's --train_steps)
} lr_schedule;

// Dies unless batch, examples and epochs are positive and warmup_epochs >= 0.
lr_schedule lr_schedule_simclr(double base_lr, lr_scaling scaling, int64_t batch,
                               int64_t examples, int64_t epochs, double warmup_epochs);
// The rate for the update after `step` steps (0 at and after total_steps).
double lr_at(const lr_schedule *s, int64_t step);

#endif
