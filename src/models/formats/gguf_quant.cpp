// ggml tensor types: block layouts, dequantisation of F32/F16/BF16/Q8_0/Q4_0/Q4_K/Q6_K to float32
// and Q8_0 quantisation (from llama.cpp's public GGUF specification).
#include <ATen/ATen.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "candor/error.h"
#include "models/formats/gguf.h"
#include "models/formats/gguf_format.h"

namespace candor {
namespace gguf {

TypeTraits traits(uint32_t type) {
  switch (type) {
    case 0:
      return {"F32", 1, 4};
    case 1:
      return {"F16", 1, 2};
    case 2:
      return {"Q4_0", 32, 18};
    case 3:
      return {"Q4_1", 32, 20};
    case 6:
      return {"Q5_0", 32, 22};
    case 7:
      return {"Q5_1", 32, 24};
    case 8:
      return {"Q8_0", 32, 34};
    case 9:
      return {"Q8_1", 32, 36};
    case 10:
      return {"Q2_K", 256, 84};
    case 11:
      return {"Q3_K", 256, 110};
    case 12:
      return {"Q4_K", 256, 144};
    case 13:
      return {"Q5_K", 256, 176};
    case 14:
      return {"Q6_K", 256, 210};
    case 15:
      return {"Q8_K", 256, 292};
    case 24:
      return {"I8", 1, 1};
    case 25:
      return {"I16", 1, 2};
    case 26:
      return {"I32", 1, 4};
    case 27:
      return {"I64", 1, 8};
    case 28:
      return {"F64", 1, 8};
    case 30:
      return {"BF16", 1, 2};
    default:
      if (type >= 16 && type <= 29) return {"IQ-quant", 0, 0};
      return {nullptr, 0, 0};
  }
}

std::string quantize_q8_0(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  const float* x = c.data_ptr<float>();
  const int64_t n = c.numel();
  std::string out(static_cast<size_t>(n / 32) * 34, '\0');
  for (int64_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    const float d = amax / 127.0f;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    uint16_t h = c10::detail::fp16_ieee_from_fp32_value(d);
    std::memcpy(&out[b * 34], &h, 2);
    for (int j = 0; j < 32; ++j) {
      out[b * 34 + 2 + j] = static_cast<char>(static_cast<int8_t>(std::lround(x[b * 32 + j] * id)));
    }
  }
  return out;
}

}  // namespace gguf

namespace {

float f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return c10::detail::fp16_ieee_to_fp32_value(h);
}

}  // namespace

using gguf::traits;
using gguf::TypeTraits;

std::string ggml_type_name(uint32_t type) {
  const char* n = traits(type).name;
  return n ? n : "type " + std::to_string(type);
}

size_t ggml_nbytes(uint32_t type, int64_t n) {
  TypeTraits t = traits(type);
  if (!t.name || t.block == 0 || n % t.block != 0) return 0;
  return static_cast<size_t>(n / t.block) * t.block_bytes;
}

void dequantize_ggml(uint32_t type, const uint8_t* p, int64_t n, float* y) {
  switch (type) {
    case 0:
      std::memcpy(y, p, n * 4);
      return;
    case 1:
      for (int64_t i = 0; i < n; ++i) y[i] = f16(p + 2 * i);
      return;
    case 30:
      for (int64_t i = 0; i < n; ++i) {
        uint32_t bits = static_cast<uint32_t>(p[2 * i] | (p[2 * i + 1] << 8)) << 16;
        std::memcpy(&y[i], &bits, 4);
      }
      return;
    case 8:  // Q8_0: per 32 values, f16 scale d, 32 int8 q: x = d * q
      for (int64_t b = 0; b < n / 32; ++b, p += 34, y += 32) {
        const float d = f16(p);
        for (int j = 0; j < 32; ++j) y[j] = d * static_cast<int8_t>(p[2 + j]);
      }
      return;
    case 2:  // Q4_0: f16 d, 16 bytes of nibbles: low nibbles are values 0..15, high 16..31
      for (int64_t b = 0; b < n / 32; ++b, p += 18, y += 32) {
        const float d = f16(p);
        for (int j = 0; j < 16; ++j) {
          y[j] = d * ((p[2 + j] & 0x0F) - 8);
          y[j + 16] = d * ((p[2 + j] >> 4) - 8);
        }
      }
      return;
    case 12:  // Q4_K: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins for 8 sub-blocks, 128 qs
      for (int64_t b = 0; b < n / 256; ++b, p += 144) {
        const float d = f16(p), dmin = f16(p + 2);
        const uint8_t* sc = p + 4;
        const uint8_t* q = p + 16;
        auto scale_min = [&](int j, uint8_t* s, uint8_t* m) {
          if (j < 4) {
            *s = sc[j] & 63;
            *m = sc[j + 4] & 63;
          } else {
            *s = (sc[j + 4] & 0x0F) | ((sc[j - 4] >> 6) << 4);
            *m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
          }
        };
        for (int j = 0, is = 0; j < 256; j += 64, is += 2, q += 32) {
          uint8_t s1, m1, s2, m2;
          scale_min(is, &s1, &m1);
          scale_min(is + 1, &s2, &m2);
          const float d1 = d * s1, n1 = dmin * m1, d2 = d * s2, n2 = dmin * m2;
          for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0x0F) - n1;
          for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - n2;
        }
      }
      return;
    case 14:  // Q6_K: 128 bytes low 4 bits, 64 bytes high 2 bits, 16 int8 scales, f16 d
      for (int64_t b = 0; b < n / 256; ++b, p += 210) {
        const uint8_t* ql = p;
        const uint8_t* qh = p + 128;
        const int8_t* sc = reinterpret_cast<const int8_t*>(p + 192);
        const float d = f16(p + 208);
        for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, y += 128) {
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = static_cast<int>((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = static_cast<int>((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = static_cast<int>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = static_cast<int>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[is] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
          }
        }
      }
      return;
    default:
      throw Error(ErrorCode::kUnsupported,
                  "ggml tensor type " + ggml_type_name(type) + " cannot be dequantised by candor",
                  "candor reads F32, F16, BF16, Q8_0, Q4_0, Q4_K and Q6_K");
  }
}

}  // namespace candor
