// Tests of lib/training/schedule against values worked out by hand from SimCLR's
// model_util.learning_rate_schedule and get_train_steps.
#include "schedule.h"

#include <math.h>
#include <string.h>

#include "../check.h"

// ImageNet pretraining as in the SimCLR paper: 1281167 images, batch 4096,
// 100 epochs, 10 warmup epochs, base rate 0.3 with linear scaling (or 0.075
// with square-root scaling: the same peak 4.8).
//   warmup = floor(10 * 1281167 / 4096) = floor(3127.85) = 3127
//   total  = 128116700 // 4096 + 1 = 31278 + 1 = 31279
TEST(simclr_imagenet)
{
    lr_schedule s = lr_schedule_simclr(0.3, LR_SCALING_LINEAR, 4096, 1281167, 100, 10);
    EXPECT_CLOSE(s.peak_lr, 4.8, 0, 1e-15);
    EXPECT(s.warmup_steps == 3127);
    EXPECT(s.total_steps == 31279);
    lr_schedule q = lr_schedule_simclr(0.075, LR_SCALING_SQRT, 4096, 1281167, 100, 10);
    EXPECT_CLOSE(q.peak_lr, 4.8, 0, 1e-15);

    EXPECT(lr_at(&s, 0) == 0);                           // the first update has rate 0
    EXPECT_CLOSE(lr_at(&s, 1), 4.8 / 3127, 0, 1e-15);
    EXPECT_CLOSE(lr_at(&s, 3126), 4.8 * 3126 / 3127, 0, 1e-15);
    EXPECT_CLOSE(lr_at(&s, 3127), 4.8, 0, 1e-15);        // warmup ends at the peak
    // Half way through the decay (28152 steps): cos(pi / 2) = 0, rate 2.4.
    EXPECT_CLOSE(lr_at(&s, 3127 + 14076), 2.4, 1e-12, 0);
    EXPECT_CLOSE(lr_at(&s, 3127 + 7038), 4.8 * 0.5 * (1 + cos(M_PI / 4)), 0, 1e-12);
    EXPECT(lr_at(&s, 31279) == 0);
    EXPECT(lr_at(&s, 40000) == 0);                       // clamped past the end
}

// 10 examples, batch 4, 2 epochs, half an epoch of warmup:
// warmup = floor(0.5 * 10 / 4) = 1 step, total = 20 // 4 + 1 = 6 steps.
TEST(small_run_every_step)
{
    lr_schedule s = lr_schedule_simclr(1.0, LR_SCALING_LINEAR, 4, 10, 2, 0.5);
    EXPECT(s.warmup_steps == 1 && s.total_steps == 6);
    double peak = 4.0 / 256;
    EXPECT(lr_at(&s, 0) == 0);
    for (int t = 1; t <= 6; t++)
        EXPECT_CLOSE(lr_at(&s, t), peak * 0.5 * (1 + cos(M_PI * (t - 1) / 5)), 1e-18, 1e-14);

    // No warmup: the first update already has the peak rate.
    lr_schedule n = lr_schedule_simclr(0.1, LR_SCALING_SQRT, 64, 1000, 10, 0);
    EXPECT(n.warmup_steps == 0 && n.total_steps == 157);
    EXPECT_CLOSE(lr_at(&n, 0), 0.8, 0, 1e-15);

    // A caller-set total shorter than the warmup: 0 after the warmup.
    lr_schedule c = s;
    c.total_steps = 1;
    EXPECT(lr_at(&c, 1) == 0 && lr_at(&c, 5) == 0);
}

TEST(scaling_names)
{
    lr_scaling k;
    EXPECT(lr_scaling_parse("linear", &k) && k == LR_SCALING_LINEAR);
    EXPECT(lr_scaling_parse("sqrt", &k) && k == LR_SCALING_SQRT);
    EXPECT(!lr_scaling_parse("log", &k));
    EXPECT(strcmp(lr_scaling_name(LR_SCALING_SQRT), "sqrt") == 0);
    EXPECT_CLOSE(lr_scaled(0.3, 512, LR_SCALING_LINEAR), 0.6, 0, 1e-15);
    EXPECT_CLOSE(lr_scaled(0.1, 100, LR_SCALING_SQRT), 1.0, 0, 1e-15);
}

int main(void)
{
    RUN(simclr_imagenet);
    RUN(small_run_every_step);
    RUN(scaling_names);
    return CHECK_DONE();
}
