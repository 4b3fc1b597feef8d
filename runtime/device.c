/* Which device a pointer lives on. A CPU backend given device memory would
 * crash, so spat_forward asks the CUDA driver about each pointer, but only
 * when the process has loaded the driver already: a process without
 * libcuda has no device pointers, and loading the driver just to ask would
 * cost a CPU-only caller a second or more. The few CUDA declarations are
 * written out here (values from cuda.h, stable since CUDA 4), so libspat
 * builds without the toolkit. */
#include "config.h"

#include <dlfcn.h>
#include <stdint.h>

#include "internal.h"

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef CUresult (*cuPointerGetAttribute_fn)(void *data, int attribute, CUdeviceptr ptr);

enum {
    CU_POINTER_ATTRIBUTE_MEMORY_TYPE = 2,
    CU_POINTER_ATTRIBUTE_IS_MANAGED = 8,
    CU_MEMORYTYPE_DEVICE = 2,
    CUDA_SUCCESS = 0,
};

/* Device memory the host cannot touch: plain cuMemAlloc memory. Managed
 * (unified) memory also reports CU_MEMORYTYPE_DEVICE but the host may read
 * and write it, so it counts as host memory here. Pointers the driver does
 * not know (it returns an error) are host memory. */
static int is_device_only(cuPointerGetAttribute_fn get, const void *p)
{
    unsigned int type = 0;
    if (get(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, (CUdeviceptr)(uintptr_t)p) != CUDA_SUCCESS)
        return 0;
    if (type != CU_MEMORYTYPE_DEVICE)
        return 0;
    int managed = 0;
    if (get(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, (CUdeviceptr)(uintptr_t)p) == CUDA_SUCCESS &&
        managed)
        return 0;
    return 1;
}

int sp_device_find_gpu_pointer(const void *const *ptrs, int n)
{
    /* RTLD_NOLOAD: a handle only if libcuda is in the process already; the
     * reference it takes is dropped below. Not cached, because the
     * application may load the driver at any time. */
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (!h)
        return -1;
    int found = -1;
    cuPointerGetAttribute_fn get = (cuPointerGetAttribute_fn)dlsym(h, "cuPointerGetAttribute");
    for (int i = 0; get && i < n && found < 0; i++)
        if (ptrs[i] && is_device_only(get, ptrs[i]))
            found = i;
    dlclose(h);
    return found;
}
