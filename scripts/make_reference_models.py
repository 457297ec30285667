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
import unicodedata

import numpy as np
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


def attention(q, k, v, causal, window=None):
    # q [H, T, hd], k/v [H, T, hd]; window: query i sees key j only when i - j < window
    T, hd = q.shape[1], q.shape[2]
    s = q @ k.transpose(1, 2) / math.sqrt(hd)
    if causal:
        s = s.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    if window is not None:
        i = torch.arange(T)[:, None]
        j = torch.arange(T)[None, :]
        s = s.masked_fill(i - j >= window, float("-inf"))
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


def layer_window(cfg, l):
    """The sliding window of layer l (None: full attention). Mistral: every layer, a null
    sliding_window meaning none. Qwen2 (transformers' Qwen2Config): only when use_sliding_window
    is true (window default 4096), and only the layers layer_types marks "sliding_attention", or
    without layer_types those with index >= max_window_layers (default 28)."""
    if cfg.get("model_type") == "mistral":
        return cfg.get("sliding_window")
    if cfg.get("model_type") == "qwen2" and cfg.get("use_sliding_window", False):
        if "layer_types" in cfg:
            windowed = cfg["layer_types"][l] == "sliding_attention"
        else:
            windowed = l >= cfg.get("max_window_layers", 28)
        return cfg.get("sliding_window", 4096) if windowed else None
    return None


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
        window = layer_window(cfg, l)
        o = attention(q, k, v, True, window).transpose(0, 1).reshape(T, D)
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

def llama_tensors(cfg, g, qkv_bias=False, std=0.15):
    D, F, H = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"]
    KV, V, hd = cfg.get("num_key_value_heads", H), cfg["vocab_size"], D // H
    r = lambda *s: torch.randn(*s, generator=g) * std
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


def gpt2_tensors(cfg, g, std=0.15):
    D, V, P = cfg["n_embd"], cfg["vocab_size"], cfg["n_positions"]
    F = cfg.get("n_inner") or 4 * D
    r = lambda *s: torch.randn(*s, generator=g) * std
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


def gguf_value(value):
    """(type id, bytes) of a metadata value: string 8, f32 6, bool 7, u32 4, array 9 (of strings,
    or of i32 for a list of ints)."""
    if isinstance(value, str):
        return 8, gguf_string(value)
    if isinstance(value, bool):
        return 7, struct.pack("<B", int(value))
    if isinstance(value, float):
        return 6, struct.pack("<f", value)
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value):
            return 9, struct.pack("<IQ", 8, len(value)) + b"".join(gguf_string(v) for v in value)
        return 9, struct.pack("<IQ", 5, len(value)) + b"".join(struct.pack("<i", v) for v in value)
    return 4, struct.pack("<I", value)


def gguf_kv(key, value):
    t, raw = gguf_value(value)
    return gguf_string(key) + struct.pack("<I", t) + raw


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


def quantize_q4_0(t):
    """Any valid Q4_0 encoding serves (the reference uses its dequantised values)."""
    x = t.to(torch.float32).reshape(-1, 32)
    d = (x.abs().amax(1) / 7).to(torch.float16)
    inv = torch.where(d.float() > 0, 1 / d.float(), torch.zeros_like(d.float()))
    q = (torch.round(x * inv[:, None]) + 8).clamp(0, 15).to(torch.int32)
    packed = (q[:, :16] | (q[:, 16:] << 4)).to(torch.uint8)
    raw = b"".join(f16_bytes(float(d[i])) + packed[i].numpy().tobytes() for i in range(x.shape[0]))
    return raw, (d.double()[:, None] * (q.double() - 8)).reshape(t.shape)


def encode(t, tname):
    if tname in ("Q4_K", "Q6_K"):
        return encode_kquant(t, tname)
    if tname == "Q8_0":
        return quantize_q8_0(t)
    if tname == "Q4_0":
        return quantize_q4_0(t)
    if tname == "F16":
        h = t.to(torch.float16)
        return h.view(torch.int16).numpy().tobytes(), h.double()
    if tname == "BF16":
        h = t.to(torch.bfloat16)
        return h.view(torch.int16).numpy().tobytes(), h.double()
    return t.to(torch.float32).numpy().tobytes(), t.double()


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

    for fname, types in (("llama_q8_0", ["Q8_0"]), ("llama_mixed", ["Q4_0", "Q8_0", "F16", "BF16"])):
        emit_gguf_llama(d, fname, types, llama_cfg, llama_t, llama_ref_ids)
    emit_gguf_gpt2(d, gpt2_cfg, gpt2_t)


def emit_gguf_llama(d, fname, types, llama_cfg, llama_t, llama_ref_ids, type_of=None, kquant=False):
    """The llama fixture as llama.cpp stores it: q/k rows permuted to the interleaved rotary
    layout, 2-D weights in `types` (cycled) or of type_of(gguf name, shape), norms F32; reference
    logits from the dequantised weights (kquant: also the float32 model's, "logits_f32")."""
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
    gg, deq, k = [], {}, 0
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
        if type_of is not None and type_of(gname, list(w.shape)) != "F32":
            tname = type_of(gname, list(w.shape))
            raw, dq = encode(w, tname)
            gg.append((gname, list(w.shape), tname, raw))
        elif type_of is None and w.dim() == 2:
            tname = types[k % len(types)]
            k += 1
            raw, dq = encode(w, tname)
            gg.append((gname, list(w.shape), tname, raw))
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
    write_gguf(os.path.join(d, fname + ".gguf"), meta, gg)
    logits = llama_forward(c, deq, llama_ref_ids)
    ref32 = llama_forward(c, {n: t.double() for n, t in llama_t}, llama_ref_ids)
    write_gguf_reference(d, fname, llama_ref_ids, types or sorted({x[2] for x in gg}), logits, ref32, kquant)


def write_gguf_reference(d, fname, ids, types, logits, ref32, kquant, extra=None):
    digits = 6 if kquant else 7  # k-quant fixtures: 1e-6, far below the 1e-4 tolerance, half the size
    ref = {"input_ids": ids, "tolerance": 1e-4, "types": types,
           "vs_f32_max_abs": float((logits - ref32).abs().max()),
           "logits": [[round(v, digits) for v in row] for row in logits.tolist()]}
    if kquant:
        ref["vs_f32_mean_abs"] = float((logits - ref32).abs().mean())
        ref["logits_f32"] = [[round(v, digits) for v in row] for row in ref32.tolist()]
    ref.update(extra or {})
    with open(os.path.join(d, fname + ".json"), "w") as f:
        json.dump(ref, f)
    print(f"{fname}.gguf: {'/'.join(types)} max|logit| {float(logits.abs().max()):.3f} "
          f"vs f32 logits {float((logits - ref32).abs().max()):.2e}")


def emit_gguf_gpt2(d, gpt2_cfg, gpt2_t, fname="gpt2", type_of=None, tokenizer=None, ids=None, prompt=None):
    """GPT-2 in GGUF naming (Conv1D weights transposed to [out, in]), F32 or of
    type_of(gguf name, shape); with a `tokenizer` (tokens, merges, token_type, eos) in the metadata
    and reference logits for `ids` from the dequantised weights."""
    gmap = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
            "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias"}
    lmap = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
            "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
    gt, deq = [], {}
    for hf_name, t in gpt2_t:
        n = hf_name[len("transformer."):]
        transposed = False
        if n.startswith("h."):
            l, rest = n[2:].split(".", 1)
            mod, kind = rest.rsplit(".", 1)
            gname = f"blk.{l}.{lmap[mod]}.{kind}"
            if kind == "weight" and t.dim() == 2:
                t = t.t().contiguous()
                transposed = True
        else:
            gname = gmap[n]
        tname = type_of(gname, list(t.shape)) if type_of else "F32"
        raw, dq = encode_kquant(t, tname) if tname in ("Q4_K", "Q6_K") else encode(t, tname)
        gt.append((gname, list(t.shape), tname, raw))
        deq[hf_name] = dq.t() if transposed else dq
    c = gpt2_cfg
    meta = {"general.architecture": "gpt2", "gpt2.context_length": c["n_positions"],
            "gpt2.embedding_length": c["n_embd"], "gpt2.block_count": c["n_layer"],
            "gpt2.feed_forward_length": c.get("n_inner") or 4 * c["n_embd"],
            "gpt2.attention.head_count": c["n_head"],
            "gpt2.attention.layer_norm_epsilon": float(c["layer_norm_epsilon"]), "tokenizer.ggml.model": "gpt2"}
    if tokenizer:
        meta.update({"tokenizer.ggml.pre": "gpt2", "tokenizer.ggml.tokens": tokenizer["tokens"],
                     "tokenizer.ggml.token_type": tokenizer["token_type"],
                     "tokenizer.ggml.merges": tokenizer["merges"],
                     "tokenizer.ggml.bos_token_id": tokenizer["eos"], "tokenizer.ggml.eos_token_id": tokenizer["eos"],
                     "tokenizer.ggml.add_bos_token": False})
    write_gguf(os.path.join(d, fname + ".gguf"), meta, gt)
    if ids is not None:
        logits = gpt2_forward(c, deq, ids)
        ref32 = gpt2_forward(c, {n: t.double() for n, t in gpt2_t}, ids)
        write_gguf_reference(d, fname, ids, sorted({x[2] for x in gt}), logits, ref32, True,
                             {"prompt": prompt})


# ---- k-quants: super-blocks of 256 values (layouts from llama.cpp's GGUF format description) --

def _f16_bytes(a):
    """[blocks] float64 -> [blocks, 2] uint8 (little-endian IEEE half)."""
    return a.astype(np.float16).view(np.uint8).reshape(-1, 2)


def _f16_values(b):
    """[blocks, 2] uint8 -> [blocks] float64."""
    return np.ascontiguousarray(b).view("<f2").reshape(-1).astype(np.float64)


def _safe_div(a, b):
    return np.where(b > 0, a / np.where(b > 0, b, 1.0), 0.0)


def quantize_q4_k(t):
    """Q4_K, 144 bytes per 256 values: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins for 8
    sub-blocks of 32 values, 128 bytes of 4-bit codes; value = d * scale * q - dmin * min.
    Each sub-block's range [min(lo, 0), hi] is spread over the codes 0..15."""
    x = t.to(torch.float64).reshape(-1, 8, 32).numpy()  # [blocks, sub-block, 32]
    lo, hi = np.minimum(x.min(2), 0.0), x.max(2)
    scale, mins = (hi - lo) / 15, -lo  # [blocks, 8]
    d = (scale.max(1) / 63).astype(np.float16).astype(np.float64)
    dmin = (mins.max(1) / 63).astype(np.float16).astype(np.float64)
    sc = np.clip(np.round(_safe_div(scale, d[:, None])), 0, 63).astype(np.int64)
    mn = np.clip(np.round(_safe_div(mins, dmin[:, None])), 0, 63).astype(np.int64)
    step, off = d[:, None] * sc, dmin[:, None] * mn
    q = np.clip(np.round(_safe_div(x + off[:, :, None], step[:, :, None])), 0, 15).astype(np.int64)
    nb = x.shape[0]
    out = np.zeros((nb, 144), np.uint8)
    out[:, 0:2], out[:, 2:4] = _f16_bytes(d), _f16_bytes(dmin)
    s = np.zeros((nb, 12), np.int64)
    s[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)  # sub-blocks 0-3, top bits of 4-7
    s[:, 4:8] = mn[:, 0:4] | ((mn[:, 4:8] >> 4) << 6)
    s[:, 8:12] = (sc[:, 4:8] & 15) | ((mn[:, 4:8] & 15) << 4)  # low bits of 4-7
    out[:, 4:16] = s
    for c in range(4):  # 64 values per 32 bytes: sub-block 2c in low nibbles, 2c+1 in high
        out[:, 16 + 32 * c:48 + 32 * c] = q[:, 2 * c] | (q[:, 2 * c + 1] << 4)
    return out.tobytes()


def dequantize_q4_k(raw):
    b = np.frombuffer(raw, np.uint8).reshape(-1, 144).astype(np.int64)
    d, dmin = _f16_values(b[:, 0:2].astype(np.uint8)), _f16_values(b[:, 2:4].astype(np.uint8))
    s, qs = b[:, 4:16], b[:, 16:144]
    sc = np.concatenate([s[:, 0:4] & 63, (s[:, 8:12] & 15) | ((s[:, 0:4] >> 6) << 4)], 1)
    mn = np.concatenate([s[:, 4:8] & 63, (s[:, 8:12] >> 4) | ((s[:, 4:8] >> 6) << 4)], 1)
    q = np.stack([qs[:, 32 * (j // 2):32 * (j // 2) + 32] >> (4 * (j % 2)) & 15 for j in range(8)], 1)
    return (d[:, None, None] * sc[:, :, None] * q - dmin[:, None, None] * mn[:, :, None]).reshape(-1)


def quantize_q6_k(t):
    """Q6_K, 210 bytes per 256 values: 128 bytes of low 4 bits, 64 bytes of high 2 bits, 16 int8
    scales (one per 16 values), f16 d; value = d * scale * (q - 32). Symmetric per 16 values."""
    x = t.to(torch.float64).reshape(-1, 16, 16).numpy()
    scale = np.abs(x).max(2) / 31  # [blocks, 16]
    d = (scale.max(1) / 127).astype(np.float16).astype(np.float64)
    sc = np.clip(np.round(_safe_div(scale, d[:, None])), 0, 127).astype(np.int64)
    q = np.clip(np.round(_safe_div(x, (d[:, None] * sc)[:, :, None])), -32, 31).astype(np.int64)
    u = (q + 32).reshape(-1, 256)
    nb = u.shape[0]
    out = np.zeros((nb, 210), np.uint8)
    for h in range(2):  # each half of 128 values: 64 bytes of ql, 32 bytes of qh
        v = [u[:, 128 * h + 32 * k:128 * h + 32 * k + 32] for k in range(4)]
        out[:, 64 * h:64 * h + 32] = (v[0] & 15) | ((v[2] & 15) << 4)
        out[:, 64 * h + 32:64 * h + 64] = (v[1] & 15) | ((v[3] & 15) << 4)
        out[:, 128 + 32 * h:160 + 32 * h] = sum((v[k] >> 4) << (2 * k) for k in range(4))
    out[:, 192:208] = sc.astype(np.int8).view(np.uint8)
    out[:, 208:210] = _f16_bytes(d)
    return out.tobytes()


def dequantize_q6_k(raw):
    b = np.frombuffer(raw, np.uint8).reshape(-1, 210)
    ql, qh = b[:, 0:128].astype(np.int64), b[:, 128:192].astype(np.int64)
    sc = np.ascontiguousarray(b[:, 192:208]).view(np.int8).astype(np.float64)
    d = _f16_values(b[:, 208:210])
    u = np.zeros((b.shape[0], 256), np.int64)
    for h in range(2):
        lo, hb = ql[:, 64 * h:64 * h + 64], qh[:, 32 * h:32 * h + 32]
        u[:, 128 * h:128 * h + 32] = (lo[:, :32] & 15) | ((hb & 3) << 4)
        u[:, 128 * h + 32:128 * h + 64] = (lo[:, 32:] & 15) | (((hb >> 2) & 3) << 4)
        u[:, 128 * h + 64:128 * h + 96] = (lo[:, :32] >> 4) | (((hb >> 4) & 3) << 4)
        u[:, 128 * h + 96:128 * h + 128] = (lo[:, 32:] >> 4) | (((hb >> 6) & 3) << 4)
    return (d[:, None] * np.repeat(sc, 16, 1) * (u - 32)).reshape(-1)


def encode_kquant(t, tname):
    """(bytes, dequantised float64 tensor); rows must hold whole super-blocks."""
    assert t.shape[-1] % 256 == 0, t.shape
    q, dq = (quantize_q4_k, dequantize_q4_k) if tname == "Q4_K" else (quantize_q6_k, dequantize_q6_k)
    raw = q(t)
    deq = torch.from_numpy(dq(raw)).reshape(t.shape)
    # A sound encoding: within one quantisation step of the input.
    assert float((deq - t.double()).abs().max()) < 0.2 * float(t.abs().max()), tname
    return raw, deq


def check_kquant_decoders():
    """The vectorised decoders above agree with the per-value decoder of random_blocks()."""
    g = torch.Generator().manual_seed(7)
    for tname, dq in (("Q4_K", dequantize_q4_k), ("Q6_K", dequantize_q6_k)):
        raw, vals = random_blocks(g, tname, 3)
        assert np.abs(dq(raw) - np.array(vals)).max() < 1e-9, tname


# ---- a tiny byte-level BPE vocabulary (GPT-2 style) ----------------------------------------

def byte_alphabet():
    """GPT-2's byte-level alphabet: printable bytes stand for themselves, the rest (controls,
    space, ...) for the code points 256, 257, ... in byte order."""
    keep = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return out


def gpt2_pieces(text):
    """GPT-2's pre-tokenizer, the regex
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
    matched by hand (Debian's python3 lacks the regex module)."""
    cat = lambda ch: "L" if unicodedata.category(ch)[0] == "L" else "N" if unicodedata.category(ch)[0] == "N" \
        else "S" if ch.isspace() else "O"
    out, i, n = [], 0, len(text)
    while i < n:
        if text[i] == "'":
            m = next((c for c in ("s", "t", "re", "ve", "m", "ll", "d") if text.startswith(c, i + 1)), None)
            if m:
                out.append(text[i:i + 1 + len(m)])
                i += 1 + len(m)
                continue
        j = i + 1 if text[i] == " " and i + 1 < n else i
        k = cat(text[j])
        if k != "S":
            e = j
            while e < n and cat(text[e]) == k:
                e += 1
            out.append(text[i:e])
            i = e
            continue
        e = i
        while e < n and cat(text[e]) == "S":
            e += 1
        if e < n and e - i > 1:
            e -= 1  # \s+(?!\S): leave the last space to the next word
        out.append(text[i:e])
        i = e
    return out


def train_bpe(corpus, n_merges):
    alpha = byte_alphabet()
    words = {}
    for p in gpt2_pieces(corpus):
        w = tuple(alpha[b] for b in p.encode())
        words[w] = words.get(w, 0) + 1
    merges = []
    for _ in range(n_merges):
        pairs = {}
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        new = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + c
        words = new
    alpha_tokens = [alpha[b] for b in range(256)]
    return alpha_tokens + [a + b for a, b in merges], merges


def bpe_encode(text, tokens, merges, special):
    alpha, ids = byte_alphabet(), {t: i for i, t in enumerate(tokens)}
    rank = {m: r for r, m in enumerate(merges)}
    out = []
    for k, chunk in enumerate(text.split(special)):
        if k > 0:
            out.append(ids[special])
        for p in gpt2_pieces(chunk):
            w = [alpha[b] for b in p.encode()]
            while len(w) > 1:
                r, i = min((rank.get((w[i], w[i + 1]), 1 << 30), i) for i in range(len(w) - 1))
                if r == 1 << 30:
                    break
                w[i:i + 2] = [w[i] + w[i + 1]]
            out += [ids[s] for s in w]
    return out


BPE_CORPUS = ("Once upon a time there was a little robot. The robot liked to count: 1, 2, 3, 10, 20, 100. "
              "It said \"hello\" to the world and the world said hello back. def main():\n    return 0\n"
              "the the the then there these those this that with which when where while 2024 2025 "
              "café naïve résumé émigré 中文 中国 ") * 3
BPE_TEST_TEXT = ("Hello world! It's 2024, and we'll see 12345 tokens; THE END?\n\n    def f(x):\n"
                 "\treturn x ** 2  # done\r\nCafé naïve émigré — 中文字符 🙂👍 <|endoftext|> the end   ")


def tokenizer_json(tokens, merges, special):
    """The tokenizer.json a Hugging Face GPT-2 tokenizer of this vocabulary would have."""
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [{"id": len(tokens), "content": special, "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": True, "special": True}],
            "normalizer": None,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                              "use_regex": True},
            "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                               "use_regex": True},
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                      "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False,
                      "vocab": {t: i for i, t in enumerate(tokens)},
                      "merges": [a + " " + b for a, b in merges]}}


# ---- GGUF fixtures with k-quants -------------------------------------------------------------

def q4_k_m_type(gname, shape):
    """Like llama.cpp's Q4_K_M mix: Q6_K for the output, value and down projections, Q4_K for the
    other matrices, F32 for vectors and the position table."""
    if len(shape) != 2 or gname == "position_embd.weight":
        return "F32"
    return "Q6_K" if gname.split(".")[-2] in ("output", "attn_v", "ffn_down") else "Q4_K"


def emit_gguf_kquants(g):
    d = os.path.join(ROOT, "..", "gguf")
    check_kquant_decoders()
    # llama: rows of 256 values (hidden and feed-forward widths 256), one layer, GQA.
    ids = [1, 17, 42, 5, 63, 8, 29, 77, 3, 50, 12]
    cfg = {"hidden_size": 256, "intermediate_size": 256, "num_hidden_layers": 1, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 96, "max_position_embeddings": 64, "rms_norm_eps": 1e-5,
           "hidden_act": "silu", "architectures": ["LlamaForCausalLM"], "model_type": "llama",
           "rope_theta": 10000.0, "tie_word_embeddings": False}
    t = llama_tensors(cfg, g, std=1 / 16)
    emit_gguf_llama(d, "llama_q4_k_m", None, cfg, t, ids, type_of=q4_k_m_type, kquant=True)

    # gpt2 with its byte-level BPE vocabulary in the metadata (and the same vocabulary as a
    # Hugging Face tokenizer.json beside it).
    special = "<|endoftext|>"
    tokens, merges = train_bpe(BPE_CORPUS, 63)
    tokens = tokens + [special]
    prompt = "Hello world! It's 2024, and the robot said hello."
    ids = bpe_encode(prompt, tokens, merges, special)[:12]
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 256, "n_layer": 1,
           "n_head": 4, "n_positions": 32, "n_inner": 256, "vocab_size": len(tokens),
           "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}
    t = [(n, w * 0.25 if n == "transformer.wte.weight" else w) for n, w in gpt2_tensors(cfg, g, std=1 / 16)]
    tok = {"tokens": tokens, "merges": [a + " " + b for a, b in merges],
           "token_type": [3 if s == special else 1 for s in tokens], "eos": len(tokens) - 1}
    emit_gguf_gpt2(d, cfg, t, fname="gpt2_q4_k_m", type_of=q4_k_m_type, tokenizer=tok, ids=ids,
                   prompt=prompt)
    with open(os.path.join(d, "gpt2_q4_k_m_tokenizer.json"), "w") as f:
        json.dump(tokenizer_json(tokens[:-1], merges, special), f, ensure_ascii=False)
    with open(os.path.join(d, "gpt2_q4_k_m_tokens.json"), "w") as f:
        json.dump({"text": BPE_TEST_TEXT, "ids": bpe_encode(BPE_TEST_TEXT, tokens, merges, special)}, f,
                  ensure_ascii=False)


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
    emit_gguf_kquants(g)
    # Mistral with a sliding window shorter than the input: query i sees keys i - 2 .. i.
    mistral_w = dict(base, architectures=["MistralForCausalLM"], model_type="mistral", rope_theta=10000.0,
                     tie_word_embeddings=False, sliding_window=3)
    ids12 = ids + [50, 12, 90]
    t = llama_tensors(mistral_w, g)
    emit("mistral_window", "mistral", mistral_w, t, ids12)
    full = llama_forward(dict(mistral_w, sliding_window=None), {n: w.double() for n, w in t}, ids12)
    windowed = llama_forward(mistral_w, {n: w.double() for n, w in t}, ids12)
    print(f"mistral_window: the window moves the logits by {float((full - windowed).abs().max()):.3f}")
    # Qwen2 with the window on its last two of three layers only (max_window_layers 1), window 4
    # over 12 tokens; smaller widths keep the fixture to a few KB.
    qwen2_w = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2,
               "num_key_value_heads": 1, "vocab_size": 64, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
               "hidden_act": "silu", "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
               "rope_theta": 10000.0, "tie_word_embeddings": True, "use_sliding_window": True,
               "sliding_window": 4, "max_window_layers": 1}
    ids_q = [1, 17, 42, 5, 63, 8, 29, 33, 3, 50, 12, 60]
    t = llama_tensors(qwen2_w, g, qkv_bias=True)
    emit("qwen2_window", "qwen2", qwen2_w, t, ids_q)
    W64 = {n: w.double() for n, w in t}
    ref = llama_forward(qwen2_w, W64, ids_q)
    for label, variant in (("no window", dict(qwen2_w, use_sliding_window=False)),
                           ("every layer windowed", dict(qwen2_w, max_window_layers=0))):
        other = llama_forward(variant, W64, ids_q)
        print(f"qwen2_window: {label} moves the logits by {float((other - ref).abs().max()):.3f}")
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(os.path.join(ROOT, ".."))
                for f in fs)
    print(f"total {total} bytes")


if __name__ == "__main__":
    sys.exit(main())
