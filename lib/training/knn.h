// knn: k-nearest-neighbour classification of feature vectors, the usual
// monitor of self-supervised pretraining (ntxent-step --monitor): the
// classes of a labeled bank of features predict those of the queries.
//
// The vote is InstDisc's weighted kNN (Wu et al. 2018, section 3.4), which
// solo-learn's WeightedKNNClassifier and lightly's knn_predict implement:
// the similarity is cosine (rows L2-normalised, then dot products); a
// query's k nearest bank rows each add exp(sim / T) to their class's score,
// and the class with the highest score is the prediction.  The defaults
// are solo-learn's, k = 20 and T = 0.07 (InstDisc's T; its k was 200).
//
// Deterministic where those libraries are not (torch.topk and argsort leave
// ties to the device): the k nearest are the k highest similarities, equal
// ones ranked by the lower bank index; each score is summed in double in
// that rank order; equal scores go to the lower class index.  Similarities
// come from gemm_f32 (each entry the same sum over the feature dimension
// whatever the thread count and block of queries), and every query is
// classified on its own, so the predictions do not depend on the threads.
//
// Features must be finite (a zero row normalises to zero: all its
// similarities are 0).
#ifndef MEDSSL_KNN_H
#define MEDSSL_KNN_H

#include <stddef.h>

#define KNN_DEFAULT_K 20
#define KNN_DEFAULT_T 0.07

typedef struct {
    int k;               // neighbours; a bank smaller than k votes with all its rows
    double temperature;  // T > 0
    int classes;         // labels are 0 .. classes - 1
} knn_config;

// Scales each of the n rows of x (n, dim) to unit L2 norm, in place (the
// norm summed in double); zero rows stay zero.
void knn_normalize(float *x, size_t n, int dim);

// bank (nb, dim) and query (nq, dim) hold normalised rows (knn_normalize);
// bank_label (nb) the bank's classes.  Writes each query's predicted class
// into pred (nq) and, when score is not NULL, its class scores into
// score (nq, classes).  nb >= 1, nb and nq < 2^31.
void knn_classify(const knn_config *c, const float *bank, const int *bank_label, size_t nb,
                  const float *query, size_t nq, int dim, int *pred, double *score);

#endif
