#!/usr/bin/env python3
"""PyTorch eager side of bench_kernels: the Llama forward as PyTorch users write it (separate
q/k/v and gate/up projections, complex rotary, keys repeated for grouped-query attention, a
causal mask added to the scores), one process serving timing requests from bench_kernels.

Protocol (one request per line on stdin, one answer per line on stdout):
  model NAME DIM HIDDEN LAYERS HEADS KV_HEADS VOCAB [EPS THETA WEIGHTS]
                                     -> ok   (WEIGHTS: candor's parameters dumped by
                                              bench_kernels, WEIGHTS.txt naming them; without
                                              it random weights, std 0.02)
  time WHAT BATCH TOKENS THREADS REPS [POINTS]
                                     -> ms t1 t2 ... (each repetition, ms)
  check DIR POINTS CHUNK             -> check key=value ... (the same computation as candor's,
                                        compared with candor's values in DIR)
  sgemm N THREADS REPS               -> ms t1 t2 ...
  quit
WHAT: forward (BATCH sequences, logits of the last position, no grad) | kshap (one sequence's
embeddings in BATCH copies, each token kept or replaced by the zero baseline at random,
logits of the last position, no grad) | fwdbwd (forward with the input embeddings requiring
grad, backward of the last position's top logit to them) | ig (integrated gradients of one
sequence as Captum computes them: POINTS scaled copies of the embeddings against a zero
baseline, run in chunks of BATCH rows, forward + backward of the target logit per chunk,
gradients averaged and multiplied by input - baseline).
Timings do not depend on weight values; the check does, so bench_kernels sends its weights.
"""
import sys
import time

try:
    import torch
except ImportError:
    print("absent python3-torch is not installed (apt-get install python3-torch)", flush=True)
    sys.exit(0)


def _openblas_setter():
    """openblas_set_num_threads of the OpenBLAS that torch loaded, or None. torch.set_num_threads
    sets the OpenMP count only: Debian's torch calls BLAS through libblas.so.3 (OpenBLAS here),
    whose own threads would otherwise run at the machine's core count beside a "1 thread" row."""
    import ctypes
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line and line.count("/")}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            fn = ctypes.CDLL(path).openblas_set_num_threads
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_int]
        return fn
    return None


_OPENBLAS_SET = _openblas_setter()


def set_threads(n):
    """n threads for the whole of PyTorch's work: OpenMP (elementwise ops) and BLAS."""
    torch.set_num_threads(n)
    if _OPENBLAS_SET is not None:
        _OPENBLAS_SET(n)


def load_weights(path):
    """candor's named parameters: PATH holds them as float32, one after the other, in the
    order and shapes that PATH.txt lists (one "name dim0 [dim1]" a line)."""
    with open(path, "rb") as f:
        buf = bytearray(f.read())
    flat = torch.frombuffer(buf, dtype=torch.float32)
    out, at = {}, 0
    with open(path + ".txt") as f:
        for line in f:
            name, *shape = line.split()
            shape = [int(x) for x in shape]
            n = 1
            for x in shape:
                n *= x
            out[name] = flat[at:at + n].view(*shape)
            at += n
    if at != flat.numel():
        raise ValueError("%s holds %d floats, %s.txt names %d" % (path, flat.numel(), path, at))
    return out


class Llama:
    def __init__(self, dim, hidden, layers, heads, kv_heads, vocab, eps=1e-5, theta=10000.0,
                 weights=None, max_len=1024):
        g = torch.Generator().manual_seed(0)
        r = lambda *s: torch.randn(*s, generator=g) * 0.02
        self.dim, self.heads, self.kv, self.hd = dim, heads, kv_heads, dim // heads
        self.eps = eps
        hd = self.hd
        self.layers = []
        if weights is None:
            self.emb = r(vocab, dim)
            for _ in range(layers):
                self.layers.append(dict(
                    an=torch.ones(dim), wq=r(heads * hd, dim), wk=r(kv_heads * hd, dim),
                    wv=r(kv_heads * hd, dim), wo=r(dim, heads * hd), fn=torch.ones(dim),
                    w1=r(hidden, dim), w3=r(hidden, dim), w2=r(dim, hidden)))
            self.norm = torch.ones(dim)
            self.out = self.emb
        else:  # candor's fused q/k/v and gate/up matrices split as PyTorch users keep them
            w = weights
            self.emb = w["tok_embeddings"]
            for l in range(layers):
                p = "layers.%d." % l
                wq, wk, wv = w[p + "wqkv"].split([heads * hd, kv_heads * hd, kv_heads * hd])
                w1, w3 = w[p + "w13"].split([hidden, hidden])
                self.layers.append(dict(
                    an=w[p + "attn_norm"], wq=wq, wk=wk, wv=wv, wo=w[p + "wo"],
                    fn=w[p + "ffn_norm"], w1=w1, w3=w3, w2=w[p + "w2"]))
            self.norm = w["final_norm"]
            self.out = w.get("output", self.emb)
        freqs = 1.0 / (theta ** (torch.arange(0, hd, 2).float() / hd))
        angles = torch.outer(torch.arange(max_len).float(), freqs)
        self.rope = torch.polar(torch.ones_like(angles), angles)

    def rmsnorm(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rotate(self, t, rope):
        B, T, H, hd = t.shape
        z = torch.view_as_complex(t.float().reshape(B, T, H, hd // 2, 2))
        return torch.view_as_real(z * rope).flatten(3)

    def forward(self, x):  # x [B, T, D] -> logits of the last position [B, V]
        B, T, D = x.shape
        H, KV, hd = self.heads, self.kv, self.hd
        rope = self.rope[:T].view(1, T, 1, hd // 2)
        mask = torch.full((T, T), float("-inf")).triu(1)
        for L in self.layers:
            h = self.rmsnorm(x, L["an"])
            q = self.rotate((h @ L["wq"].t()).view(B, T, H, hd), rope)
            k = self.rotate((h @ L["wk"].t()).view(B, T, KV, hd), rope)
            v = (h @ L["wv"].t()).view(B, T, KV, hd)
            if KV != H:
                k = k.repeat_interleave(H // KV, dim=2)
                v = v.repeat_interleave(H // KV, dim=2)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            s = q @ k.transpose(2, 3) / (hd ** 0.5) + mask
            o = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, T, D)
            x = x + o @ L["wo"].t()
            h = self.rmsnorm(x, L["fn"])
            x = x + (torch.nn.functional.silu(h @ L["w1"].t()) * (h @ L["w3"].t())) @ L["w2"].t()
        return self.rmsnorm(x[:, -1], self.norm) @ self.out.t()


def integrated_gradients(model, x, target, points, chunk):
    """Captum's IntegratedGradients (method riemann_middle, baseline zeros, internal_batch_size
    = chunk) written out: the attribution [T, D] of the target logit at the last position."""
    alphas = (torch.arange(points, dtype=torch.float32) + 0.5) / points
    baseline = torch.zeros_like(x)
    total = torch.zeros_like(x)
    for start in range(0, points, chunk):
        a = alphas[start:start + chunk].view(-1, 1, 1)
        scaled = (baseline + a * (x - baseline)).requires_grad_(True)
        logits = model.forward(scaled)
        (grad,) = torch.autograd.grad(logits[:, target].sum(), scaled)
        total += grad.sum(0)
    return (x - baseline) * total / points


def masked_copies(x, batch, g):
    keep = torch.rand(batch, x.shape[0], 1, generator=g) < 0.5
    return torch.where(keep, x.expand(batch, -1, -1), torch.zeros_like(x))


def read_f32(path, *shape):
    with open(path, "rb") as f:
        return torch.frombuffer(bytearray(f.read()), dtype=torch.float32).view(*shape)


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def check(model, d, points, chunk):
    """The same computation as candor's on the ids in d/ids.txt: last-position logits, the
    gradient of the target logit to the embeddings, integrated gradients."""
    with open(d + "/ids.txt") as f:
        ids = torch.tensor([int(t) for t in f.read().split()])
    target = int(open(d + "/target.txt").read())
    T, D = ids.numel(), model.dim
    x = model.emb[ids].clone()
    with torch.no_grad():
        logits = model.forward(x.unsqueeze(0))[0]
    e = x.clone().unsqueeze(0).requires_grad_(True)
    model.forward(e)[0, target].backward()
    grad = e.grad[0]
    ig = integrated_gradients(model, x, target, points, chunk)
    c_logits = read_f32(d + "/logits.f32", -1)
    c_grad = read_f32(d + "/grad.f32", T, D)
    c_ig = read_f32(d + "/ig.f32", T, D)
    return ("check target=%d logit_candor=%.6g logit_torch=%.6g logits_rel=%.2e grad_rel=%.2e "
            "ig_rel=%.2e ig_sum_candor=%.6g ig_sum_torch=%.6g" % (
                target, float(c_logits[target]), float(logits[target]), rel(c_logits, logits),
                rel(c_grad, grad), rel(c_ig, ig), float(c_ig.sum()), float(ig.sum())))


def serve(f, model, vocab):
    """Answers one request; returns the (possibly new) model and its vocabulary size."""
    if f[0] == "model":
        dim, hidden, layers, heads, kv, vocab = map(int, f[2:8])
        eps = float(f[8]) if len(f) > 8 else 1e-5
        theta = float(f[9]) if len(f) > 9 else 10000.0
        weights = load_weights(f[10]) if len(f) > 10 and f[10] != "-" else None
        model = Llama(dim, hidden, layers, heads, kv, vocab, eps, theta, weights)
        print("ok", flush=True)
    elif f[0] == "time":
        what, B, T, threads, reps = f[1], int(f[2]), int(f[3]), int(f[4]), int(f[5])
        points = int(f[6]) if len(f) > 6 else 50
        set_threads(threads)
        g = torch.Generator().manual_seed(1)
        ids = torch.randint(3, vocab, (1 if what in ("kshap", "ig") else B, T), generator=g)
        target = 0
        if what == "ig":
            with torch.no_grad():
                target = int(model.forward(model.emb[ids])[0].argmax())
        times = []
        if what == "ig":  # the warm-up: one chunk (a whole run of 50 points is long)
            integrated_gradients(model, model.emb[ids][0], target, B, B)
        for _ in range(reps + (0 if what == "ig" else 1)):  # else the first is a warm-up
            emb = model.emb[ids].clone()
            if what == "kshap":  # built outside the timing, as on candor's side
                emb = masked_copies(emb[0], B, g)
            start = time.perf_counter()
            if what in ("forward", "kshap"):
                with torch.no_grad():
                    model.forward(emb)
            elif what == "ig":
                integrated_gradients(model, emb[0], target, points, B)
            else:
                emb.requires_grad_(True)
                logits = model.forward(emb)
                logits.max(-1).values.sum().backward()
            times.append((time.perf_counter() - start) * 1e3)
        print("ms " + " ".join("%.4f" % t for t in times[(0 if what == "ig" else 1):]),
              flush=True)
    elif f[0] == "check":
        set_threads(1)
        print(check(model, f[1], int(f[2]), int(f[3])), flush=True)
    elif f[0] == "sgemm":
        n, threads, reps = int(f[1]), int(f[2]), int(f[3])
        set_threads(threads)
        a, b = torch.randn(n, n), torch.randn(n, n)
        times = []
        for _ in range(reps + 1):
            start = time.perf_counter()
            torch.mm(a, b)
            times.append((time.perf_counter() - start) * 1e3)
        print("ms " + " ".join("%.4f" % t for t in times[1:]), flush=True)
    else:
        print("error unknown request " + f[0], flush=True)
    return model, vocab


def main():
    model = None
    vocab = 0
    print("ready torch %s" % torch.__version__, flush=True)
    for line in sys.stdin:
        f = line.split()
        if not f:
            continue
        if f[0] == "quit":
            break
        try:
            model, vocab = serve(f, model, vocab)
        except Exception as e:  # an answer, so that bench_kernels never waits forever
            print("error %s: %s" % (type(e).__name__, str(e).replace("\n", " ")), flush=True)


if __name__ == "__main__":
    main()
