// The stale-data test's GPU side (`hdpflush validate`, docs/validate.md).
//
// The CPU wrote `words` 32-bit words through the VRAM BAR, word i = pattern(seed, i), flushed
// the HDP (or not, for the control) and dispatched this kernel. Each work-item checks a strided
// share of the words and adds the words that differ to `result[0]`, the words it checked to
// `result[1]`. Built without ROCm's device library (-nogpulib): builtins and clang's OpenCL
// atomics only.
//
// The loads are relaxed atomics at system scope, so the GPU's caches cannot answer them with
// an older copy: a mismatch means the CPU's stores had not reached VRAM.

uint pattern(uint seed, uint i) {
    uint x = (seed ^ i) * 0x9E3779B1u;
    return x ^ (x >> 15);
}

__kernel void check_pattern(__global atomic_uint *words, uint count, uint seed,
                            __global atomic_uint *result) {
    // The sizes from the AQL dispatch packet itself (workgroup_size_x at byte 4, grid_size_x
    // at byte 12): the hidden kernel arguments a ROCm runtime would fill are not filled here.
    __constant char *packet = (__constant char *)__builtin_amdgcn_dispatch_ptr();
    uint group = *(__constant ushort *)(packet + 4);
    uint stride = *(__constant uint *)(packet + 12);
    uint id = __builtin_amdgcn_workgroup_id_x() * group + __builtin_amdgcn_workitem_id_x();
    uint bad = 0;
    uint seen = 0;
    for (uint i = id; i < count; i += stride) {
        uint v = __opencl_atomic_load(&words[i], memory_order_relaxed, memory_scope_all_svm_devices);
        bad += (v != pattern(seed, i));
        seen += 1;
    }
    if (bad != 0)
        __opencl_atomic_fetch_add(&result[0], bad, memory_order_relaxed, memory_scope_all_svm_devices);
    __opencl_atomic_fetch_add(&result[1], seen, memory_order_relaxed, memory_scope_all_svm_devices);
}
