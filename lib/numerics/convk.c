#include "convk.h"

#include <stdlib.h>
#include <string.h>
#include "cpu.h"
#include "util.h"

static bool cpu_runs(const convk *k)
{
#ifdef __x86_64__
    // __builtin_cpu_supports also checks that the OS saves the vector state.
    if (k == &convk_avx512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    if (k == &convk_avx2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return k == &convk_generic;
}

static const convk *const sets[] = {&convk_avx512, &convk_avx2, &convk_generic};

static const convk *named(const char *name)
{
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
        if (strcmp(sets[i]->name, name) == 0)
            return sets[i];
    return NULL;
}

const convk *convk_by_name(const char *name)
{
    const convk *k = named(name);
    return k && cpu_runs(k) ? k : NULL;
}

const char *convk_names(void) { return "avx512 avx2 generic"; }

const convk *convk_selected(void)
{
    static const convk *chosen;
    if (chosen)
        return chosen;
    const char *want = getenv("MEDSSL_CONV_KERNELS");
    if (!want || !*want || strcmp(want, "auto") == 0) {
        for (size_t i = 0; i < sizeof sets / sizeof *sets && !chosen; i++)
            if (cpu_runs(sets[i]) && !(sets[i] == &convk_avx512 && cpu_avx512_halved()))
                chosen = sets[i];
        return chosen;
    }
    chosen = convk_by_name(want);
    if (!chosen)
        die("conv", "MEDSSL_CONV_KERNELS=%s: %s (kernel sets: auto %s)", want,
            named(want) ? "this CPU cannot run that set" : "no such kernel set", convk_names());
    return chosen;
}
