#include "cpu.h"

#ifdef __x86_64__
#include <cpuid.h>
#endif

bool cpu_avx512_halved(void)
{
#ifdef __x86_64__
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d))
        return false;
    // "AuthenticAMD" in EBX, EDX, ECX.
    const bool amd = b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163;
    if (!amd || !__get_cpuid(1, &a, &b, &c, &d))
        return false;
    unsigned family = (a >> 8) & 0xf;
    if (family == 0xf)
        family += (a >> 20) & 0xff;
    return family == 0x19;
#else
    return false;
#endif
}
