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

namespace {

void put_f16(uint8_t* p, float v) {
  const uint16_t h = c10::detail::fp16_ieee_from_fp32_value(v);
  std::memcpy(p, &h, 2);
}

float round_f16(float v) {
  return c10::detail::fp16_ieee_to_fp32_value(c10::detail::fp16_ieee_from_fp32_value(v));
}

int nearest(float v, int lo, int hi) {
  return std::min(hi, std::max(lo, static_cast<int>(std::lround(v))));
}

// Q4_K: per 256 values, 8 sub-blocks of 32 with x = d * s_j * q - dmin * m_j, q in 0..15,
// s_j and m_j 6-bit. A sub-block's range is [min(0, min x), max x].
void quantize_q4_k_block(const float* x, uint8_t* out) {
  float scale[8], offset[8];
  float max_scale = 0, max_offset = 0;
  for (int j = 0; j < 8; ++j) {
    float lo = 0, hi = 0;
    for (int l = 0; l < 32; ++l) {
      lo = std::min(lo, x[32 * j + l]);
      hi = std::max(hi, x[32 * j + l]);
    }
    scale[j] = (hi - lo) / 15.0f;
    offset[j] = -lo;
    max_scale = std::max(max_scale, scale[j]);
    max_offset = std::max(max_offset, offset[j]);
  }
  const float d = round_f16(max_scale / 63.0f), dmin = round_f16(max_offset / 63.0f);
  uint8_t s[8], m[8];
  for (int j = 0; j < 8; ++j) {
    s[j] = static_cast<uint8_t>(d > 0 ? nearest(scale[j] / d, 0, 63) : 0);
    m[j] = static_cast<uint8_t>(dmin > 0 ? nearest(offset[j] / dmin, 0, 63) : 0);
  }
  put_f16(out, d);
  put_f16(out + 2, dmin);
  uint8_t* sc = out + 4;
  for (int i = 0; i < 4; ++i) {
    sc[i] = static_cast<uint8_t>((s[i] & 63) | ((s[i + 4] >> 4) << 6));
    sc[i + 4] = static_cast<uint8_t>((m[i] & 63) | ((m[i + 4] >> 4) << 6));
    sc[i + 8] = static_cast<uint8_t>((s[i + 4] & 0x0F) | ((m[i + 4] & 0x0F) << 4));
  }
  uint8_t q[256];
  for (int j = 0; j < 8; ++j) {
    const float step = d * s[j], off = dmin * m[j];
    for (int l = 0; l < 32; ++l)
      q[32 * j + l] =
          static_cast<uint8_t>(step > 0 ? nearest((x[32 * j + l] + off) / step, 0, 15) : 0);
  }
  uint8_t* qs = out + 16;
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l)
      qs[32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
  }
}

// Q6_K: per 256 values, 16 sub-blocks of 16 with x = d * s_j * (q - 32), q in 0..63, s_j int8.
void quantize_q6_k_block(const float* x, uint8_t* out) {
  float scale[16], max_scale = 0;
  for (int j = 0; j < 16; ++j) {
    float amax = 0;
    for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(x[16 * j + l]));
    scale[j] = amax / 32.0f;
    max_scale = std::max(max_scale, scale[j]);
  }
  const float d = round_f16(max_scale / 127.0f);
  int8_t s[16];
  for (int j = 0; j < 16; ++j) s[j] = static_cast<int8_t>(d > 0 ? nearest(scale[j] / d, 0, 127) : 0);
  uint8_t q[256];
  for (int j = 0; j < 16; ++j) {
    const float step = d * s[j];
    for (int l = 0; l < 16; ++l)
      q[16 * j + l] =
          static_cast<uint8_t>((step > 0 ? nearest(x[16 * j + l] / step, -32, 31) : 0) + 32);
  }
  uint8_t* ql = out;
  uint8_t* qh = out + 128;
  for (int h = 0; h < 2; ++h, ql += 64, qh += 32) {
    const uint8_t* v = q + 128 * h;
    for (int l = 0; l < 32; ++l) {
      ql[l] = static_cast<uint8_t>((v[l] & 0x0F) | ((v[l + 64] & 0x0F) << 4));
      ql[l + 32] = static_cast<uint8_t>((v[l + 32] & 0x0F) | ((v[l + 96] & 0x0F) << 4));
      qh[l] = static_cast<uint8_t>((v[l] >> 4) | ((v[l + 32] >> 4) << 2) | ((v[l + 64] >> 4) << 4) |
                                   ((v[l + 96] >> 4) << 6));
    }
  }
  std::memcpy(out + 192, s, 16);
  put_f16(out + 208, d);
}

}  // namespace

std::string quantize_ggml(uint32_t type, const float* x, int64_t n) {
  const TypeTraits t = traits(type);
  if (!t.name || t.block == 0 || n % t.block != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                std::to_string(n) + " values are not a whole number of " + ggml_type_name(type) +
                    " blocks");
  }
  std::string out(static_cast<size_t>(n / t.block) * t.block_bytes, '\0');
  uint8_t* o = reinterpret_cast<uint8_t*>(&out[0]);
  switch (type) {
    case 0:
      std::memcpy(o, x, static_cast<size_t>(n) * 4);
      return out;
    case 1:
      for (int64_t i = 0; i < n; ++i) put_f16(o + 2 * i, x[i]);
      return out;
    case 30:
      for (int64_t i = 0; i < n; ++i) {
        uint32_t bits;
        std::memcpy(&bits, &x[i], 4);
        bits += 0x7FFF + ((bits >> 16) & 1);  // round to nearest even
        o[2 * i] = static_cast<uint8_t>(bits >> 16);
        o[2 * i + 1] = static_cast<uint8_t>(bits >> 24);
      }
      return out;
    case 8:
      for (int64_t b = 0; b < n / 32; ++b, x += 32, o += 34) {
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        put_f16(o, d);
        for (int j = 0; j < 32; ++j)
          o[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(x[j] * id)));
      }
      return out;
    case 12:
      for (int64_t b = 0; b < n / 256; ++b) quantize_q4_k_block(x + 256 * b, o + 144 * b);
      return out;
    case 14:
      for (int64_t b = 0; b < n / 256; ++b) quantize_q6_k_block(x + 256 * b, o + 210 * b);
      return out;
    default:
      throw Error(ErrorCode::kUnsupported,
                  "candor cannot quantise to ggml type " + ggml_type_name(type),
                  "candor writes F32, F16, BF16, Q8_0, Q4_K and Q6_K");
  }
}

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
