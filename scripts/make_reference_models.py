#!/usr/bin/python3
"""Writes tiny randomly initialised Hugging Face-style checkpoints (config.json +
model.safetensors) for every architecture candor reads, with reference logits computed by the
plain-PyTorch implementations below (written from the published architectures, independent of
candor's C++ code), into tests/fixtures/models/.

Run with Debian's torch:  /usr/bin/python3 scripts/make_reference_models.py
(apt-get install python3-torch python3-numpy). The outputs are committed; CI does not run this.

Each fixture folder holds config.json, model.safetensors (or shards + index) and reference.json:
{"input_ids": [...], "logits": [[...]] (causal LM: [seq][vocab]) or [...] (classifier:
[n_labels]), "dtype": ..., "tolerance": ...}. The reference is computed in float64 from the
weights exactly as stored (F16/BF16 weights rounded), so candor (float32 compute) must match it
within the stated tolerance; "vs_f32_max_abs" records how far rounding the weights moved the
logits from the float32 model's.
"""
import json
import math
import os
import shutil
import struct
import sys

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "models")
DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def write_safetensors(path, tensors):
    """tensors: list of (name, tensor). The format: u64 header length, JSON header, raw data."""
    header, blobs, off = {}, [], 0
    for name, t in tensors:
        t = t.contiguous()
        if t.dtype == torch.bfloat16:
            raw = t.view(torch.int16).numpy().tobytes()
        else:
            raw = t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - (8 + len(h)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---- reference implementations (float64) -------------------------------------------------

def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = (x - mu).pow(2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_erf(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x.pow(3))))


def attention(q, k, v, causal):
    # q [H, T, hd], k/v [H, T, hd]
    T, hd = q.shape[1], q.shape[2]
    s = q @ k.transpose(1, 2) / math.sqrt(hd)
    if causal:
        s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    return torch.softmax(s, -1) @ v


def rope_inv_freq(cfg, hd):
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    rs = cfg.get("rope_scaling")
    if rs:
        kind = rs.get("rope_type", rs.get("type"))
        if kind == "linear":
            inv = inv / rs["factor"]
        elif kind == "llama3":
            f, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
            out = []
            for fr in inv.tolist():
                wl = 2 * math.pi / fr
                if wl < old / hi:
                    out.append(fr)
                elif wl > old / lo:
                    out.append(fr / f)
                else:
                    sm = (old / wl - lo) / (hi - lo)
                    out.append((1 - sm) * fr / f + sm * fr)
            inv = torch.tensor(out, dtype=torch.float64)
    return inv


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


def llama_forward(cfg, W, ids):
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    KV = cfg.get("num_key_value_heads", H)
    hd, eps, T = D // H, cfg["rms_norm_eps"], len(ids)
    x = W["model.embed_tokens.weight"][ids]
    ang = torch.arange(T, dtype=torch.float64)[:, None] * rope_inv_freq(cfg, hd)[None, :]
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        def proj(n, heads):
            y = h @ W[p + f"self_attn.{n}_proj.weight"].T
            if p + f"self_attn.{n}_proj.bias" in W:
                y = y + W[p + f"self_attn.{n}_proj.bias"]
            return y.view(T, heads, hd).transpose(0, 1)
        q, k, v = proj("q", H), proj("k", KV), proj("v", KV)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = k.repeat_interleave(H // KV, 0), v.repeat_interleave(H // KV, 0)
        o = attention(q, k, v, True).transpose(0, 1).reshape(T, D)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (g * torch.sigmoid(g) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, W["model.norm.weight"], eps)
    out = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return x @ out.T


def gpt2_forward(cfg, W, ids):
    D, H, T, eps = cfg["n_embd"], cfg["n_head"], len(ids), cfg["layer_norm_epsilon"]
    hd = D // H
    x = W["transformer.wte.weight"][ids] + W["transformer.wpe.weight"][:T]
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        h = layer_norm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
        qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]  # Conv1D: x @ W
        q, k, v = (t.view(T, H, hd).transpose(0, 1) for t in qkv.split(D, -1))
        o = attention(q, k, v, True).transpose(0, 1).reshape(T, D)
        x = x + o @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = layer_norm(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
        m = gelu_tanh(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"])
        x = x + m @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    x = layer_norm(x, W["transformer.ln_f.weight"], W["transformer.ln_f.bias"], eps)
    return x @ W["transformer.wte.weight"].T


def encoder_forward(cfg, W, ids, family):
    T = len(ids)
    lin = lambda x, n: x @ W[n + ".weight"].T + W[n + ".bias"]
    if family == "distilbert":
        D, H, eps = cfg["dim"], cfg["n_heads"], 1e-12
        e = "distilbert.embeddings."
        x = W[e + "word_embeddings.weight"][ids] + W[e + "position_embeddings.weight"][:T]
        x = layer_norm(x, W[e + "LayerNorm.weight"], W[e + "LayerNorm.bias"], eps)
        for l in range(cfg["n_layers"]):
            p = f"distilbert.transformer.layer.{l}."
            q, k, v = (lin(x, p + f"attention.{n}_lin").view(T, H, D // H).transpose(0, 1) for n in "qkv")
            o = lin(attention(q, k, v, False).transpose(0, 1).reshape(T, D), p + "attention.out_lin")
            x = layer_norm(o + x, W[p + "sa_layer_norm.weight"], W[p + "sa_layer_norm.bias"], eps)
            f = lin(gelu_erf(lin(x, p + "ffn.lin1")), p + "ffn.lin2")
            x = layer_norm(f + x, W[p + "output_layer_norm.weight"], W[p + "output_layer_norm.bias"], eps)
        pooled = torch.relu(lin(x[0], "pre_classifier"))
        return lin(pooled, "classifier")
    D, H, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
    e = family + ".embeddings."
    if family == "roberta":
        pos = torch.arange(T) + cfg["pad_token_id"] + 1
    else:
        pos = torch.arange(T)
    x = W[e + "word_embeddings.weight"][ids] + W[e + "position_embeddings.weight"][pos] + W[e + "token_type_embeddings.weight"][0]
    x = layer_norm(x, W[e + "LayerNorm.weight"], W[e + "LayerNorm.bias"], eps)
    for l in range(cfg["num_hidden_layers"]):
        p = f"{family}.encoder.layer.{l}."
        q, k, v = (lin(x, p + f"attention.self.{n}").view(T, H, D // H).transpose(0, 1) for n in ("query", "key", "value"))
        o = lin(attention(q, k, v, False).transpose(0, 1).reshape(T, D), p + "attention.output.dense")
        x = layer_norm(o + x, W[p + "attention.output.LayerNorm.weight"], W[p + "attention.output.LayerNorm.bias"], eps)
        f = lin(gelu_erf(lin(x, p + "intermediate.dense")), p + "output.dense")
        x = layer_norm(f + x, W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"], eps)
    if family == "roberta":
        return lin(torch.tanh(lin(x[0], "classifier.dense")), "classifier.out_proj")
    return lin(torch.tanh(lin(x[0], family + ".pooler.dense")), "classifier")


# ---- random checkpoints --------------------------------------------------------------------

def llama_tensors(cfg, g, qkv_bias=False):
    D, F, H = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"]
    KV, V, hd = cfg.get("num_key_value_heads", H), cfg["vocab_size"], D // H
    r = lambda *s: torch.randn(*s, generator=g) * 0.15
    n = lambda: 1 + torch.randn(D, generator=g) * 0.1
    t = [("model.embed_tokens.weight", torch.randn(V, D, generator=g) * 0.5)]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        t += [(p + "input_layernorm.weight", n()),
              (p + "self_attn.q_proj.weight", r(H * hd, D)), (p + "self_attn.k_proj.weight", r(KV * hd, D)),
              (p + "self_attn.v_proj.weight", r(KV * hd, D))]
        if qkv_bias:
            t += [(p + "self_attn.q_proj.bias", r(H * hd)), (p + "self_attn.k_proj.bias", r(KV * hd)),
                  (p + "self_attn.v_proj.bias", r(KV * hd))]
        t += [(p + "self_attn.o_proj.weight", r(D, H * hd)), (p + "post_attention_layernorm.weight", n()),
              (p + "mlp.gate_proj.weight", r(F, D)), (p + "mlp.up_proj.weight", r(F, D)),
              (p + "mlp.down_proj.weight", r(D, F))]
    t.append(("model.norm.weight", n()))
    if not cfg.get("tie_word_embeddings", False):
        t.append(("lm_head.weight", r(V, D)))
    return t


def gpt2_tensors(cfg, g):
    D, V, P, F = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"], 4 * cfg["n_embd"]
    r = lambda *s: torch.randn(*s, generator=g) * 0.15
    n = lambda: 1 + torch.randn(D, generator=g) * 0.1
    t = [("transformer.wte.weight", torch.randn(V, D, generator=g) * 0.5), ("transformer.wpe.weight", r(P, D))]
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        t += [(p + "ln_1.weight", n()), (p + "ln_1.bias", r(D)),
              (p + "attn.c_attn.weight", r(D, 3 * D)), (p + "attn.c_attn.bias", r(3 * D)),
              (p + "attn.c_proj.weight", r(D, D)), (p + "attn.c_proj.bias", r(D)),
              (p + "ln_2.weight", n()), (p + "ln_2.bias", r(D)),
              (p + "mlp.c_fc.weight", r(D, F)), (p + "mlp.c_fc.bias", r(F)),
              (p + "mlp.c_proj.weight", r(F, D)), (p + "mlp.c_proj.bias", r(D))]
    t += [("transformer.ln_f.weight", n()), ("transformer.ln_f.bias", r(D))]
    return t


def encoder_tensors(cfg, g, family):
    r = lambda *s: torch.randn(*s, generator=g) * 0.15
    NL = len(cfg["id2label"])
    if family == "distilbert":
        D, F, V, P = cfg["dim"], cfg["hidden_dim"], cfg["vocab_size"], cfg["max_position_embeddings"]
        n = lambda: 1 + torch.randn(D, generator=g) * 0.1
        e = "distilbert.embeddings."
        t = [(e + "word_embeddings.weight", torch.randn(V, D, generator=g) * 0.5), (e + "position_embeddings.weight", r(P, D)),
             (e + "LayerNorm.weight", n()), (e + "LayerNorm.bias", r(D))]
        for l in range(cfg["n_layers"]):
            p = f"distilbert.transformer.layer.{l}."
            for nm in ("q_lin", "k_lin", "v_lin", "out_lin"):
                t += [(p + f"attention.{nm}.weight", r(D, D)), (p + f"attention.{nm}.bias", r(D))]
            t += [(p + "sa_layer_norm.weight", n()), (p + "sa_layer_norm.bias", r(D)),
                  (p + "ffn.lin1.weight", r(F, D)), (p + "ffn.lin1.bias", r(F)),
                  (p + "ffn.lin2.weight", r(D, F)), (p + "ffn.lin2.bias", r(D)),
                  (p + "output_layer_norm.weight", n()), (p + "output_layer_norm.bias", r(D))]
        t += [("pre_classifier.weight", r(D, D)), ("pre_classifier.bias", r(D)),
              ("classifier.weight", r(NL, D) * 4), ("classifier.bias", r(NL))]
        return t
    D, F, V, P = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["max_position_embeddings"]
    n = lambda: 1 + torch.randn(D, generator=g) * 0.1
    e = family + ".embeddings."
    t = [(e + "word_embeddings.weight", torch.randn(V, D, generator=g) * 0.5), (e + "position_embeddings.weight", r(P, D)),
         (e + "token_type_embeddings.weight", r(cfg["type_vocab_size"], D)),
         (e + "LayerNorm.weight", n()), (e + "LayerNorm.bias", r(D))]
    for l in range(cfg["num_hidden_layers"]):
        p = f"{family}.encoder.layer.{l}."
        for nm in ("query", "key", "value"):
            t += [(p + f"attention.self.{nm}.weight", r(D, D)), (p + f"attention.self.{nm}.bias", r(D))]
        t += [(p + "attention.output.dense.weight", r(D, D)), (p + "attention.output.dense.bias", r(D)),
              (p + "attention.output.LayerNorm.weight", n()), (p + "attention.output.LayerNorm.bias", r(D)),
              (p + "intermediate.dense.weight", r(F, D)), (p + "intermediate.dense.bias", r(F)),
              (p + "output.dense.weight", r(D, F)), (p + "output.dense.bias", r(D)),
              (p + "output.LayerNorm.weight", n()), (p + "output.LayerNorm.bias", r(D))]
    if family == "roberta":
        t += [("classifier.dense.weight", r(D, D)), ("classifier.dense.bias", r(D)),
              ("classifier.out_proj.weight", r(NL, D) * 4), ("classifier.out_proj.bias", r(NL))]
    else:
        t += [(family + ".pooler.dense.weight", r(D, D)), (family + ".pooler.dense.bias", r(D)),
              ("classifier.weight", r(NL, D) * 4), ("classifier.bias", r(NL))]
    return t


def forward(family, cfg, W, ids):
    if family in ("llama", "mistral", "qwen2"):
        return llama_forward(cfg, W, ids)
    if family == "gpt2":
        return gpt2_forward(cfg, W, ids)
    return encoder_forward(cfg, W, ids, family)


def emit(name, family, cfg, tensors, ids, dtype=torch.float32, shards=1, tolerance=1e-4):
    d = os.path.join(ROOT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    stored = [(n, t.to(dtype)) for n, t in tensors]
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), stored)
    else:
        per = (len(stored) + shards - 1) // shards
        weight_map = {}
        for s in range(shards):
            fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = stored[s * per:(s + 1) * per]
            write_safetensors(os.path.join(d, fn), part)
            weight_map.update({n: fn for n, _ in part})
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)
    W = {n: t.to(torch.float64) for n, t in stored}
    W32 = {n: t.to(torch.float64) for n, t in tensors}
    logits = forward(family, cfg, W, ids)
    ref32 = forward(family, cfg, W32, ids)
    ref = {"input_ids": ids, "dtype": DTYPES[dtype], "tolerance": tolerance,
           "vs_f32_max_abs": float((logits - ref32).abs().max()),
           "logits": [[round(v, 7) for v in row] for row in logits.tolist()] if logits.dim() == 2
           else [round(v, 7) for v in logits.tolist()]}
    with open(os.path.join(d, "reference.json"), "w") as f:
        json.dump(ref, f)
    print(f"{name}: {family} {DTYPES[dtype]} max|logit| {float(logits.abs().max()):.3f} "
          f"vs f32 {ref['vs_f32_max_abs']:.2e}")


# ---- GGUF (layouts from llama.cpp's public GGUF specification) -----------------------------

GGML = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 8, "Q4_K": 12, "Q6_K": 14, "BF16": 30}


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, value):
    out = gguf_string(key)
    if isinstance(value, str):
        return out + struct.pack("<I", 8) + gguf_string(value)
    if isinstance(value, float):
        return out + struct.pack("<If", 6, value)
    return out + struct.pack("<II", 4, value)


def write_gguf(path, metadata, tensors, alignment=32):
    """tensors: list of (name, torch shape, ggml type name, raw bytes)."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for k, v in metadata.items():
        head += gguf_kv(k, v)
    off, blobs = 0, []
    for name, shape, tname, raw in tensors:
        head += gguf_string(name) + struct.pack("<I", len(shape))
        for d in reversed(shape):
            head += struct.pack("<Q", d)
        head += struct.pack("<IQ", GGML[tname], off)
        pad = (-len(raw)) % alignment
        blobs.append(raw + b"\0" * pad)
        off += len(raw) + pad
    head += b"\0" * ((-len(head)) % alignment)
    with open(path, "wb") as f:
        f.write(head)
        for b in blobs:
            f.write(b)


def f16_bytes(x):
    return torch.tensor(x, dtype=torch.float16).view(torch.int16).numpy().tobytes()


def quantize_q8_0(t):
    """Returns (bytes, dequantised float64 values) for a float tensor, blocks of 32 along rows."""
    x = t.to(torch.float32).reshape(-1, 32)
    d = (x.abs().amax(1) / 127).to(torch.float16)
    inv = torch.where(d.float() > 0, 1 / d.float(), torch.zeros_like(d.float()))
    q = torch.round(x * inv[:, None]).clamp(-128, 127).to(torch.int8)
    raw = b"".join(f16_bytes(float(d[i])) + q[i].numpy().tobytes() for i in range(x.shape[0]))
    deq = d.double()[:, None] * q.double()
    return raw, deq.reshape(t.shape)


def random_blocks(g, tname, n_blocks):
    """Random valid blocks of a quantised type (scales are small finite f16 numbers) and their
    dequantised values, computed here from the block layout."""
    rb = lambda n: torch.randint(0, 256, (n,), generator=g, dtype=torch.uint8)
    sc = lambda: float(torch.rand(1, generator=g)) * 0.05 + 0.001
    raw, vals = b"", []
    for _ in range(n_blocks):
        if tname == "Q4_0":
            d, qs = sc(), rb(16)
            raw += f16_bytes(d) + qs.numpy().tobytes()
            dd = float(torch.tensor(d, dtype=torch.float16))
            lo = [(int(v) & 15) - 8 for v in qs]
            hi = [(int(v) >> 4) - 8 for v in qs]
            vals += [dd * v for v in lo + hi]
        elif tname == "Q8_0":
            d, qs = sc(), rb(32)
            raw += f16_bytes(d) + qs.numpy().tobytes()
            dd = float(torch.tensor(d, dtype=torch.float16))
            vals += [dd * (int(v) - 256 if v > 127 else int(v)) for v in qs]
        elif tname == "Q4_K":
            d, dmin, scales, qs = sc(), sc(), rb(12), rb(128)
            raw += f16_bytes(d) + f16_bytes(dmin) + scales.numpy().tobytes() + qs.numpy().tobytes()
            dd = float(torch.tensor(d, dtype=torch.float16))
            dm = float(torch.tensor(dmin, dtype=torch.float16))
            s = [int(v) for v in scales]
            def scale_min(j):
                if j < 4:
                    return s[j] & 63, s[j + 4] & 63
                return (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4)
            q = [int(v) for v in qs]
            for chunk in range(4):  # 64 values: low nibbles of 32 bytes, then high nibbles
                (s1, m1), (s2, m2) = scale_min(2 * chunk), scale_min(2 * chunk + 1)
                part = q[32 * chunk:32 * chunk + 32]
                vals += [dd * s1 * (v & 15) - dm * m1 for v in part]
                vals += [dd * s2 * (v >> 4) - dm * m2 for v in part]
        elif tname == "Q6_K":
            ql, qh, scales, d = rb(128), rb(64), rb(16), sc()
            raw += ql.numpy().tobytes() + qh.numpy().tobytes() + scales.numpy().tobytes() + f16_bytes(d)
            dd = float(torch.tensor(d, dtype=torch.float16))
            L, Hh = [int(v) for v in ql], [int(v) for v in qh]
            S = [int(v) - 256 if v > 127 else int(v) for v in scales]
            out = [0.0] * 256
            for half in range(2):
                for l in range(32):
                    lo0, lo1, h = L[64 * half + l], L[64 * half + l + 32], Hh[32 * half + l]
                    qv = [(lo0 & 15) | ((h & 3) << 4), (lo1 & 15) | (((h >> 2) & 3) << 4),
                          (lo0 >> 4) | (((h >> 4) & 3) << 4), (lo1 >> 4) | (((h >> 6) & 3) << 4)]
                    for k in range(4):
                        out[128 * half + l + 32 * k] = dd * S[8 * half + l // 16 + 2 * k] * (qv[k] - 32)
            vals += out
    return raw, vals


def emit_gguf(g, llama_cfg, llama_t, llama_ref_ids, gpt2_cfg, gpt2_t):
    d = os.path.join(ROOT, "..", "gguf")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    # 1. Every readable type: random blocks and their values.
    tensors, expect = [], {}
    for tname, shape in (("Q4_0", [2, 64]), ("Q8_0", [2, 64]), ("Q4_K", [2, 256]), ("Q6_K", [2, 256])):
        n_blocks = shape[0] * shape[1] // (32 if tname in ("Q4_0", "Q8_0") else 256)
        raw, vals = random_blocks(g, tname, n_blocks)
        tensors.append((tname.lower(), shape, tname, raw))
        expect[tname.lower()] = vals
    x = torch.randn(3, 5, generator=g)
    tensors.append(("f32", [3, 5], "F32", x.numpy().tobytes()))
    expect["f32"] = x.double().flatten().tolist()
    tensors.append(("f16", [3, 5], "F16", x.to(torch.float16).view(torch.int16).numpy().tobytes()))
    expect["f16"] = x.to(torch.float16).double().flatten().tolist()
    tensors.append(("bf16", [3, 5], "BF16", x.to(torch.bfloat16).view(torch.int16).numpy().tobytes()))
    expect["bf16"] = x.to(torch.bfloat16).double().flatten().tolist()
    write_gguf(os.path.join(d, "types.gguf"), {"general.architecture": "none", "general.alignment": 32}, tensors)
    with open(os.path.join(d, "types.json"), "w") as f:
        json.dump({k: [round(v, 8) for v in vs] for k, vs in expect.items()}, f)

    # 2. The llama fixture as llama.cpp stores it: q/k rows permuted to the interleaved rotary
    # layout, 2-D weights Q8_0, norms F32; reference logits from the dequantised weights.
    H, KV = llama_cfg["num_attention_heads"], llama_cfg["num_key_value_heads"]
    def to_interleaved(w, heads):
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
                 "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
                 "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                 "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                 "mlp.down_proj.weight": "ffn_down.weight"}
    gg, deq = [], {}
    for n, t in llama_t:
        if n.startswith("model.layers."):
            l, rest = n[len("model.layers."):].split(".", 1)
            gname = f"blk.{l}." + per_layer[rest]
        else:
            gname = names[n]
        w = t
        if rest_is(n, "q_proj"):
            w = to_interleaved(t, H)
        elif rest_is(n, "k_proj"):
            w = to_interleaved(t, KV)
        if w.dim() == 2:
            raw, dq = quantize_q8_0(w)
            gg.append((gname, list(w.shape), "Q8_0", raw))
        else:
            raw, dq = w.to(torch.float32).numpy().tobytes(), w.double()
            gg.append((gname, list(w.shape), "F32", raw))
        # Back to the HF layout for the reference implementation.
        if rest_is(n, "q_proj"):
            dq = dq.reshape(H, dq.shape[0] // H // 2, 2, -1).transpose(1, 2).reshape(t.shape)
        elif rest_is(n, "k_proj"):
            dq = dq.reshape(KV, dq.shape[0] // KV // 2, 2, -1).transpose(1, 2).reshape(t.shape)
        deq[n] = dq
    c = llama_cfg
    meta = {"general.architecture": "llama", "general.alignment": 32,
            "llama.context_length": c["max_position_embeddings"], "llama.embedding_length": c["hidden_size"],
            "llama.block_count": c["num_hidden_layers"], "llama.feed_forward_length": c["intermediate_size"],
            "llama.attention.head_count": H, "llama.attention.head_count_kv": KV,
            "llama.attention.layer_norm_rms_epsilon": float(c["rms_norm_eps"]),
            "llama.rope.freq_base": float(c["rope_theta"])}
    write_gguf(os.path.join(d, "llama_q8_0.gguf"), meta, gg)
    logits = llama_forward(c, deq, llama_ref_ids)
    ref32 = llama_forward(c, {n: t.double() for n, t in llama_t}, llama_ref_ids)
    with open(os.path.join(d, "llama_q8_0.json"), "w") as f:
        json.dump({"input_ids": llama_ref_ids, "tolerance": 1e-4,
                   "vs_f32_max_abs": float((logits - ref32).abs().max()),
                   "logits": [[round(v, 7) for v in row] for row in logits.tolist()]}, f)
    print(f"llama_q8_0.gguf: Q8_0 vs f32 logits {float((logits - ref32).abs().max()):.2e}")

    # 3. GPT-2 in GGUF naming (Conv1D weights transposed to [out, in]), F32.
    gmap = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
            "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}
    lmap = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
            "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
    gt = []
    for n, t in gpt2_t:
        n = n[len("transformer."):]
        if n.startswith("h."):
            l, rest = n[2:].split(".", 1)
            mod, kind = rest.rsplit(".", 1)
            gname = f"blk.{l}.{lmap[mod]}.{kind}"
            if kind == "weight" and t.dim() == 2:
                t = t.t().contiguous()
        else:
            gname = gmap[n]
        gt.append((gname, list(t.shape), "F32", t.to(torch.float32).numpy().tobytes()))
    c = gpt2_cfg
    meta = {"general.architecture": "gpt2", "gpt2.context_length": c["n_positions"],
            "gpt2.embedding_length": c["n_embd"], "gpt2.block_count": c["n_layer"],
            "gpt2.feed_forward_length": 4 * c["n_embd"], "gpt2.attention.head_count": c["n_head"],
            "gpt2.attention.layer_norm_epsilon": float(c["layer_norm_epsilon"]), "tokenizer.ggml.model": "gpt2"}
    write_gguf(os.path.join(d, "gpt2.gguf"), meta, gt)


def rest_is(name, proj):
    return name.endswith(f"self_attn.{proj}.weight")


def main():
    g = torch.Generator().manual_seed(20260529)
    ids = [1, 17, 42, 5, 63, 8, 29, 77, 3]
    base = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": 96, "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
            "hidden_act": "silu"}
    llama = dict(base, architectures=["LlamaForCausalLM"], model_type="llama", rope_theta=10000.0,
                 tie_word_embeddings=False)
    t = llama_t = llama_tensors(llama, g)
    emit("llama", "llama", llama, t, ids)
    emit("llama_f16", "llama", llama, t, ids, dtype=torch.float16)
    emit("llama_bf16", "llama", llama, t, ids, dtype=torch.bfloat16)
    emit("llama_sharded", "llama", llama, t, ids, shards=3)
    llama3 = dict(base, architectures=["LlamaForCausalLM"], model_type="llama", rope_theta=10000.0,
                  tie_word_embeddings=True,
                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
    emit("llama3_scaled", "llama", llama3, llama_tensors(llama3, g), ids)
    mistral = dict(base, architectures=["MistralForCausalLM"], model_type="mistral", rope_theta=1000.0,
                   tie_word_embeddings=False, sliding_window=4096,
                   rope_scaling={"type": "linear", "factor": 2.0})
    emit("mistral_linear", "mistral", mistral, llama_tensors(mistral, g), ids)
    qwen2 = dict(base, architectures=["Qwen2ForCausalLM"], model_type="qwen2", rope_theta=1000000.0,
                 tie_word_embeddings=True, use_sliding_window=False)
    emit("qwen2", "qwen2", qwen2, llama_tensors(qwen2, g, qkv_bias=True), ids)
    gpt2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 32, "n_layer": 2,
            "n_head": 4, "n_positions": 32, "n_inner": None, "vocab_size": 96, "layer_norm_epsilon": 1e-5,
            "activation_function": "gelu_new"}
    t = gpt2_t = gpt2_tensors(gpt2, g)
    emit("gpt2", "gpt2", gpt2, t, ids)
    emit("gpt2_f16", "gpt2", gpt2, t, ids, dtype=torch.float16)
    labels3 = {"0": "negative", "1": "neutral", "2": "positive"}
    bert = {"architectures": ["BertForSequenceClassification"], "model_type": "bert", "hidden_size": 32,
            "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
            "max_position_embeddings": 32, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "vocab_size": 96,
            "position_embedding_type": "absolute", "id2label": labels3,
            "label2id": {v: int(k) for k, v in labels3.items()}}
    t = encoder_tensors(bert, g, "bert")
    emit("bert", "bert", bert, t, ids)
    emit("bert_bf16", "bert", bert, t, ids, dtype=torch.bfloat16)
    roberta = {"architectures": ["RobertaForSequenceClassification"], "model_type": "roberta", "hidden_size": 32,
               "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
               "max_position_embeddings": 34, "type_vocab_size": 1, "layer_norm_eps": 1e-5, "vocab_size": 96,
               "pad_token_id": 1, "id2label": {"0": "NEGATIVE", "1": "POSITIVE"}}
    emit("roberta", "roberta", roberta, encoder_tensors(roberta, g, "roberta"), ids)
    distil = {"architectures": ["DistilBertForSequenceClassification"], "model_type": "distilbert", "dim": 32,
              "n_layers": 2, "n_heads": 4, "hidden_dim": 64, "activation": "gelu", "max_position_embeddings": 64,
              "vocab_size": 512, "id2label": {"0": "NEGATIVE", "1": "POSITIVE"}}
    emit("distilbert", "distilbert", distil, encoder_tensors(distil, g, "distilbert"), ids)
    emit_gguf(g, llama, llama_t, ids, gpt2, gpt2_t)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(os.path.join(ROOT, ".."))
                for f in fs)
    print(f"total {total} bytes")


if __name__ == "__main__":
    sys.exit(main())
