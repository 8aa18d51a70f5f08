// AdaIN on a latent already in device memory: one block per (sample, channel).
//
//   mu, sigma  = mean and sqrt(population variance + eps) of z[n, c, :, :]
//   t          = (z - mu) / sigma * style_std[c] + style_mean[c]
//   out        = strength * t + (1 - strength) * z
//
// The same math as engine/mixing.py (the NumPy reference). `out` is the decoder's input
// buffer, so the mixed latent never leaves the device. `out` may equal `z` (in place):
// every element is read before the block writes it (statistics pass, then the write pass).
// Style statistics are (N, C) when style_stride == C, or one (C,) row shared by the batch
// when style_stride == 0. Sums are accumulated in double: a latent channel of a large image
// holds ~1e6 values and float sums lose the variance's low digits.
#ifndef ADAIN_BLOCK
#define ADAIN_BLOCK 256
#endif

extern "C" __global__ void __launch_bounds__(ADAIN_BLOCK)
adain_mix(const float* z, float* out,  // no __restrict__: out may alias z
          const float* __restrict__ style_mean, const float* __restrict__ style_std,
          int channels, int hw, int style_stride, float strength, float eps)
{
    __shared__ double s_sum[ADAIN_BLOCK];
    __shared__ double s_sq[ADAIN_BLOCK];
    const int nc = blockIdx.x;                 // n * channels + c
    const int c = nc % channels;
    const int n = nc / channels;
    const float* x = z + (size_t)nc * hw;
    float* y = out + (size_t)nc * hw;

    // pass 1: the mean
    double acc = 0.0;
    for (int i = threadIdx.x; i < hw; i += blockDim.x) acc += (double)x[i];
    s_sum[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) s_sum[threadIdx.x] += s_sum[threadIdx.x + s];
        __syncthreads();
    }
    const double mu = s_sum[0] / (double)hw;

    // pass 2: the variance about the mean (two passes: no catastrophic cancellation)
    double sq = 0.0;
    for (int i = threadIdx.x; i < hw; i += blockDim.x) { double d = (double)x[i] - mu; sq += d * d; }
    s_sq[threadIdx.x] = sq;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) s_sq[threadIdx.x] += s_sq[threadIdx.x + s];
        __syncthreads();
    }
    const float sigma = (float)sqrt(s_sq[0] / (double)hw + (double)eps);

    const int si = n * style_stride + c;
    const float scale = style_std[si] / sigma;
    const float shift = style_mean[si];
    const float fmu = (float)mu;
    for (int i = threadIdx.x; i < hw; i += blockDim.x) {
        const float v = x[i];
        const float t = (v - fmu) * scale + shift;
        y[i] = strength * t + (1.0f - strength) * v;
    }
}

// The decoder's style input (the style offset), made where the encoder wrote the content's
// code: one thread per number.
//
//   out[n, j] = strength * (style[n, j] - own[n, j])
//
// own/out are (N, 2K) codes (means, then stds). The style is read from the same statistics
// buffer adain_mix uses: style_mean (rows of K means) and style_std (rows of K stds), row n at
// n * style_stride (style_stride == K: one code per sample; 0: one code for the batch).
extern "C" __global__ void
style_offset(const float* __restrict__ own, float* __restrict__ out,
         const float* __restrict__ style_mean, const float* __restrict__ style_std,
         int n, int k, int style_stride, float strength)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n * 2 * k) return;
    const int row = i / (2 * k);
    const int j = i % (2 * k);
    const float s = j < k ? style_mean[row * style_stride + j] : style_std[row * style_stride + (j - k)];
    out[i] = strength * (s - own[i]);
}
