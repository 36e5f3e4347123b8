// The CUDA names a kernel may use, mapped onto host C++ for the emulated device (see kernels.py).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <xmmintrin.h>
#include <pmmintrin.h>

#define __device__
#define __host__
#define __global__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static

typedef _Float16 float16;
typedef _Float16 half;

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
inline dim3 threadIdx, blockIdx, blockDim, gridDim;

// CuPy's raw array parameter: C-contiguous here, indexed by element, with size().
template <class T> struct RawArray {
    T* data_; long long size_;
    RawArray(T* d, long long n) : data_(d), size_(n) {}
    T& operator[](ptrdiff_t i) const { return data_[i]; }
    long long size() const { return size_; }
};
struct LoopIndex { long long n; long long size() const { return n; } };

// CuPy compiles with -ftz=true: float32 denormals flush to zero (in and out) for the kernel's duration.
struct FtzScope {
    unsigned saved;
    FtzScope() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040); }
    ~FtzScope() { _mm_setcsr(saved); }
};

using std::min; using std::max; using std::sqrt; using std::exp; using std::log; using std::abs;
using std::floor; using std::ceil; using std::tanh; using std::pow; using std::isfinite; using std::isnan;
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __half2float(half h) { return (float)h; }
inline half __float2half(float f) { return (half)f; }
// threads run one at a time: memory is always in order
inline void __threadfence() {}
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T atomicAdd(T* p, T v) { T old = *p; *p += v; return old; }
template <class T> inline T atomicMax(T* p, T v) { T old = *p; *p = std::max(old, v); return old; }
template <class T> inline T atomicMin(T* p, T v) { T old = *p; *p = std::min(old, v); return old; }
template <class T> inline T atomicExch(T* p, T v) { T old = *p; *p = v; return old; }
