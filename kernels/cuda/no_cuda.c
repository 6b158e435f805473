/* no_cuda.c: the CUDA entry points of kernels.h and backend_impl.h for a build without CUDA
 * (built instead of the .cu files of this folder). Each says so; nothing else changes, so a
 * CPU-only binary behaves as a CUDA binary on a machine without a GPU. */
#include "../backend_impl.h"

#include <string.h>

#define NO_CUDA "built without CUDA"

int tw_cuda_compiled(void) { return 0; }

const char *tw_cuda_build_info(void) { return NO_CUDA; }

tw_status tw_cuda_device_count(int *count) {
    *count = 0;
    return tw_error(TW_ERR_UNSUPPORTED, NO_CUDA);
}

tw_status tw_cuda_device_info(int index, tw_device_info *info) {
    memset(info, 0, sizeof *info);
    return tw_error(TW_ERR_UNSUPPORTED, "cuda:%d: " NO_CUDA, index);
}

tw_status tw_cuda_backend_init(tw_backend *be, int device) {
    return tw_error(TW_ERR_UNSUPPORTED, "cuda:%d: " NO_CUDA, device);
}
