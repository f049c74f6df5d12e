// optim: the optimisers that update a model's param_list from its gradients:
// SGD with momentum (PyTorch's torch.optim.SGD), LARS (SimCLR's reference
// LARSOptimizer) and AdamW (PyTorch's torch.optim.AdamW).
//
// Every optimiser skips frozen parameters (read once, at optim_create) and
// leaves no_decay parameters (biases, batch-norm scales and shifts) out of
// weight decay; LARS also leaves them out of its trust-ratio adaptation, as
// SimCLR does with exclude_from_weight_decay = ['batch_normalization', 'bias'].
// (SimCLR also excludes its fine-tuning head, 'head_supervised', from LARS
// but decays that head's kernel through an L2 term in the loss instead; a
// param_t cannot say "decay but do not adapt", so fine-tuning with LARS here
// treats such a head as an ordinary parameter unless it is marked no_decay.)
//
// SGD, per parameter w with gradient g (dampening 0, as PyTorch's default):
//     g' = g + wd w                 (no wd for no_decay)
//     buf = momentum buf + g'       (buf starts at 0, so step 1 sets buf = g')
//     w -= lr (nesterov ? g' + momentum buf : buf)
// LARS (classic momentum, the reference's default):
//     g' = g + wd w                 (weight decay BEFORE the trust ratio)
//     trust = eta |w| / |g'|        (1 when |w| = 0 or |g'| = 0, or no_decay)
//     v = momentum v + lr trust g'
//     w -= nesterov ? momentum v + lr trust g' : v
// AdamW (decoupled decay, bias correction, no amsgrad), step t from 1:
//     w *= 1 - lr wd                (no_decay: no decay)
//     m = b1 m + (1 - b1) g,  s = b2 s + (1 - b2) g^2
//     w -= lr / (1 - b1^t) * m / (sqrt(s) / sqrt(1 - b2^t) + eps)
//
// State for checkpoints: optim_state_get lists every state tensor by name,
// "<param>.momentum" (SGD, LARS; LARS's includes the learning rate, as the
// reference's "Momentum" slot), "<param>.exp_avg" and "<param>.exp_avg_sq"
// (AdamW, PyTorch's names), for non-frozen parameters only; a checkpoint
// writer saves them and the step count, a loader copies them back into the
// listed memory and sets o->step.
#ifndef MEDSSL_OPTIM_H
#define MEDSSL_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "param.h"

typedef enum { OPTIM_SGD, OPTIM_LARS, OPTIM_ADAMW } optim_kind;

// Hyperparameters are doubles, as PyTorch's Python floats: coefficients
// such as 1 - beta2 are formed in double and rounded to float once (a float
// beta2 = 0.999f would make 1 - beta2 wrong in the fifth digit).
typedef struct {
    optim_kind kind;
    double momentum;       // SGD, LARS
    bool nesterov;         // SGD, LARS
    double weight_decay;   // SGD, LARS: added to the gradient; AdamW: decoupled
    double trust_coef;     // LARS's eta
    double beta1, beta2;   // AdamW
    double eps;            // AdamW
} optim_config;

// The defaults of PyTorch's classes (SGD: momentum 0, no weight decay;
// AdamW: betas (0.9, 0.999), eps 1e-8, weight decay 0.01) and of SimCLR's
// LARSOptimizer (momentum 0.9, eta 0.001, weight decay 0; SimCLR's run.py
// passes --weight_decay 1e-6).
optim_config optim_defaults(optim_kind kind);
// "sgd", "lars", "adamw"; false for anything else.
bool optim_kind_parse(const char *name, optim_kind *out);
const char *optim_kind_name(optim_kind kind);

typedef struct {
    optim_config cfg;
    const param_list *params;  // the list may not gain or lose entries later
    int count;                 // params->count at optim_create
    int64_t step;              // steps taken (AdamW's bias correction uses it)
    int nslots;                // state tensors per parameter: 1 (SGD, LARS), 2 (AdamW)
    float **slot[2];           // slot[k][p]: (params->items[p].n,), NULL if frozen
} optimizer;

// Allocates zeroed state for the non-frozen parameters of `params`.
optimizer *optim_create(const param_list *params, const optim_config *cfg);
void optim_free(optimizer *o);
// One update of every non-frozen parameter from its gradient, at rate lr
// (the schedule's value for this step); then step += 1.  Parameters are
// updated one after another, each in a fixed order: deterministic.
void optim_step(optimizer *o, double lr);

typedef struct {
    char name[PARAM_NAME_MAX + 16];  // "<param>.momentum", ...
    float *data;                     // (n,), owned by the optimiser
    size_t n;
    int rank;                        // the parameter's shape
    int64_t shape[PARAM_MAX_RANK];
} optim_state;

// Number of state tensors, and the i-th one (0 <= i < count).
int optim_state_count(const optimizer *o);
optim_state optim_state_get(const optimizer *o, int i);

#endif
