/* no_cuda.c: built instead of the .cu files of kernels/cuda when twin is built without CUDA. */
typedef int twin_no_cuda_unit; /* ISO C wants at least one declaration per file */
