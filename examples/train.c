/* One training step through libspat: JIT-compile a pattern, run the forward
 * pass, take the gradient of a loss through spat_backward, and move Q, K and
 * V one step of gradient descent. The loss, 0.5 * sum (O - T)^2 against a
 * target T that another V would give, is printed before and after the
 * step; the program fails when it did not go down.
 *
 *   cc train.c $(pkg-config --cflags --libs spat) -lm -o train && ./train */
#include <spat.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *pattern = "pattern local { causal; window -127..+0; global 0..3; }";

enum { B = 1, HQ = 4, HKV = 2, N = 512, D = 64 };

static float *alloc(size_t n)
{
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return p;
}

static void fill(float *x, size_t n, float amp)
{
    for (size_t i = 0; i < n; i++)
        x[i] = amp * ((float)rand() / (float)RAND_MAX - 0.5f);
}

/* O and LSE of Q, K, V; returns the loss against t (0 when t is NULL). */
static double forward(const spat_kernel *k, const float *q, const float *kk, const float *v,
                      float *o, float *lse, const float *t)
{
    spat_forward_args a;
    spat_forward_args_init(&a, B, HQ, HKV, N, N, D); /* contiguous BHSD */
    a.q = q;
    a.k = kk;
    a.v = v;
    a.o = o;
    a.lse = lse; /* the backward needs it */
    if (spat_forward(k, &a) != SPAT_OK) {
        fprintf(stderr, "forward: %s\n", spat_last_error());
        exit(1);
    }
    double loss = 0;
    for (size_t i = 0; t && i < (size_t)B * HQ * N * D; i++)
        loss += 0.5 * (o[i] - t[i]) * (o[i] - t[i]);
    return loss;
}

int main(void)
{
    spat_kernel *k;
    if (spat_compile(pattern, NULL, NULL, &k) != SPAT_OK) {
        fprintf(stderr, "compile: %s\n", spat_last_error());
        return 1;
    }
    const size_t nq = (size_t)B * HQ * N * D, nk = (size_t)B * HKV * N * D;
    float *q = alloc(nq), *kk = alloc(nk), *v = alloc(nk), *t = alloc(nq);
    float *o = alloc(nq), *lse = alloc((size_t)B * HQ * N), *dout = alloc(nq);
    float *dq = alloc(nq), *dk = alloc(nk), *dv = alloc(nk);
    srand(1);
    fill(q, nq, 2);
    fill(kk, nk, 2);
    fill(v, nk, 1);
    /* The target: the output that V2 in place of V gives. */
    float *v2 = alloc(nk);
    fill(v2, nk, 1);
    forward(k, q, kk, v2, t, lse, NULL);
    free(v2);

    const double before = forward(k, q, kk, v, o, lse, t);

    /* dL/dO of the loss, then dL/dQ, dL/dK, dL/dV through the pattern. */
    for (size_t i = 0; i < nq; i++)
        dout[i] = o[i] - t[i];
    spat_backward_args a;
    spat_backward_args_init(&a, B, HQ, HKV, N, N, D);
    a.q = q;
    a.k = kk;
    a.v = v;
    a.o = o;
    a.lse = lse;
    a.dout = dout;
    a.dq = dq;
    a.dk = dk; /* K and V are shared by two query heads each: their */
    a.dv = dv; /* gradients sum over both (GQA) */
    if (spat_backward(k, &a) != SPAT_OK) {
        fprintf(stderr, "backward: %s\n", spat_last_error());
        return 1;
    }

    /* One step of gradient descent on Q, K and V. */
    const float lr = 0.2f;
    for (size_t i = 0; i < nq; i++)
        q[i] -= lr * dq[i];
    for (size_t i = 0; i < nk; i++) {
        kk[i] -= lr * dk[i];
        v[i] -= lr * dv[i];
    }

    const double after = forward(k, q, kk, v, o, lse, t);
    printf("%s: B=%d Hq=%d Hkv=%d N=%d d=%d  loss %.6f -> %.6f after one SGD step (lr %.2f)\n",
           spat_kernel_name(k), B, HQ, HKV, N, D, before, after, lr);
    spat_kernel_free(k);
    free(q), free(kk), free(v), free(t), free(o), free(lse), free(dout);
    free(dq), free(dk), free(dv);
    return after < before ? 0 : 1;
}
