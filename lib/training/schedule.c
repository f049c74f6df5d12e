#include "schedule.h"

#include <math.h>
#include <string.h>

#include "util.h"

bool lr_scaling_parse(const char *name, lr_scaling *out)
{
    if (strcmp(name, "linear") == 0)
        *out = LR_SCALING_LINEAR;
    else if (strcmp(name, "sqrt") == 0)
        *out = LR_SCALING_SQRT;
    else
        return false;
    return true;
}

const char *lr_scaling_name(lr_scaling s)
{
    return s == LR_SCALING_LINEAR ? "linear" : "sqrt";
}

double lr_scaled(double base_lr, int64_t batch, lr_scaling scaling)
{
    return scaling == LR_SCALING_LINEAR ? base_lr * (double)batch / 256.0
                                        : base_lr * sqrt((double)batch);
}

lr_schedule lr_schedule_simclr(double base_lr, lr_scaling scaling, int64_t batch,
                               int64_t examples, int64_t epochs, double warmup_epochs)
{
    if (batch < 1 || examples < 1 || epochs < 1 || !(warmup_epochs >= 0))
        die("schedule", "bad arguments: batch %lld, examples %lld, epochs %lld, warmup %g",
            (long long)batch, (long long)examples, (long long)epochs, warmup_epochs);
    lr_schedule s = {
        .peak_lr = lr_scaled(base_lr, batch, scaling),
        // Python's float floor division, as the reference's
        // int(round(warmup_epochs * num_examples // batch_size)).
        .warmup_steps = (int64_t)floor(warmup_epochs * (double)examples / (double)batch),
        .total_steps = mul_size((size_t)examples, (size_t)epochs, "schedule") / (size_t)batch + 1,
    };
    return s;
}

double lr_at(const lr_schedule *s, int64_t step)
{
    if (step < s->warmup_steps)
        return s->peak_lr * (double)step / (double)s->warmup_steps;
    int64_t decay_steps = s->total_steps - s->warmup_steps;
    if (decay_steps <= 0)
        return 0.0;
    int64_t t = step - s->warmup_steps;
    if (t > decay_steps)
        t = decay_steps;
    return s->peak_lr * 0.5 * (1.0 + cos(M_PI * (double)t / (double)decay_steps));
}
