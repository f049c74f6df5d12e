// loss: the training objectives, each a forward and backward pass in one
// call: NT-Xent for contrastive pretraining (SimCLR, MICLe), softmax cross
// entropy for multi-class fine-tuning, sigmoid binary cross entropy for
// multi-label fine-tuning, InfoNCE against a queue of keys and mean squared
// error for reconstruction (PCRL).
//
// Each returns the loss and, when the gradient pointer is not NULL, writes
// (does not accumulate) the gradient of that loss with respect to its input.
// Sums are taken in double in a fixed order, so results do not depend on the
// thread count.
#ifndef MEDSSL_LOSS_H
#define MEDSSL_LOSS_H

#include <stddef.h>

// NT-Xent, the normalised temperature-scaled cross entropy of SimCLR.
//
// z: (rows, dim) projections of the whole (possibly gathered) batch,
// rows = 2 * pairs.  Layout: rows 2k and 2k+1 are the two views of pair k
// (record k of a pair stream gives rows 2k and 2k+1), so the positive of
// row i is row i ^ 1.  Rows are L2-normalised (u = z / max(|z|, 1e-12), as
// torch's F.normalize; the gradient goes through the normalisation), and
// s_ij = u_i . u_j / tau.  Anchor i has one positive and rows - 2 negatives
// (itself excluded):
//     l_i = -log( exp(s_{i,i^1}) / sum_{j != i} exp(s_ij) ).
// The loss is sum_i l_i / pairs: the two directions are SUMMED, as in the
// SimCLR reference code (loss_a + loss_b, each the mean over the pairs), so it
// is twice the mean over all 2N anchors that some PyTorch ports report.
//
// Several processes: each gathers every process's projections into z (an
// all-gather, which keeps the interleaved layout when each process holds
// whole pairs) and passes its own anchors as rows [lo, hi).  The return value
// is this process's share, sum_{lo <= i < hi} l_i / pairs, and dz: (rows, dim)
// is the gradient of that share with respect to EVERY row of z (a row is also
// a negative and a positive of other processes' anchors).  Summing the
// returned losses and the dz over processes (an all-reduce) gives the loss
// and its gradient; each process then keeps its own rows of dz.  A single
// process passes lo = 0, hi = rows.
//
// correct (may be NULL) receives the number of anchors in [lo, hi) whose
// positive is strictly more similar than every one of their rows - 2
// negatives (top-1 accuracy of the contrastive task; ties count as wrong).
//
// Costs three GEMMs of (hi - lo) x rows x dim and a (hi - lo) x rows buffer.
float ntxent_loss(const float *z, int rows, int dim, int lo, int hi, float tau,
                  float *dz, int *correct);

// Softmax cross entropy, the mean over the batch (torch's F.cross_entropy).
// logits: (n, classes); labels: (n,) in [0, classes) (anything else dies);
// dlogits: (n, classes) or NULL.  correct (may be NULL) receives the number of
// rows whose first largest logit is at the label (torch.argmax's choice).
// `total` is the batch the mean is over: n for a batch of its own, the
// global batch when these n rows are a share of it (a micro-batch, a rank's
// rows); the value is then this share's part of the mean, and dlogits the
// whole batch's gradient at these rows, the same bits however it is split.
double softmax_xent(const float *logits, const int *labels, int n, int classes, int total,
                    float *dlogits, int *correct);

// Sigmoid binary cross entropy with multi-hot targets, the mean over all
// n * classes elements (torch's BCEWithLogitsLoss default), evaluated as
//     max(x, 0) - x t + log(1 + exp(-|x|))
// so that no logit overflows.  logits, targets (in [0, 1]): (n, classes);
// dlogits: (n, classes) or NULL, = (sigmoid(x) - t) / (total * classes):
// `total` rows in the batch, as for softmax_xent.
double sigmoid_bce(const float *logits, const float *targets, int n, int classes, int total,
                   float *dlogits);

// InfoNCE against a queue of keys (MoCo's, PCRL's contrast; the official
// PCRL code's NCE with a normalisation constant is not used).  Query i
// (the student's projection of one view) has one positive, key i (the
// momentum encoder's projection of the other view), and the K keys of the
// queue as negatives; q and k are L2-normalised here (q through the
// normalisation; k and the queue get no gradient), the queue's rows must
// be unit already (the trainer pushes normalised keys):
//     l_i = -log( e^{u_i . v_i / tau} / (e^{u_i . v_i / tau} + sum_k e^{u_i . Q_k / tau}) )
// The loss is the mean over i.  q, k: (n, dim); queue: (K, dim), K >= 0;
// dq: (n, dim) or NULL; correct (may be NULL): queries whose positive is
// strictly more similar than every queue key.
float infonce_queue(const float *q, const float *k, int n, int dim, const float *queue, int K, float tau,
                    float *dq, int *correct);

// Mean squared error over n elements (torch's MSELoss default, PCRL's
// reconstruction loss), summed in double; dpred: n values or NULL,
// = 2 (pred - target) / n.
float mse_loss(const float *pred, const float *target, size_t n, float *dpred);

#endif
