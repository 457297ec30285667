#!/usr/bin/env python3
"""PyTorch eager side of bench_kernels: the Llama forward as PyTorch users write it (separate
q/k/v and gate/up projections, complex rotary, keys repeated for grouped-query attention, a
causal mask added to the scores), one process serving timing requests from bench_kernels.

Protocol (one request per line on stdin, one answer per line on stdout):
  model NAME DIM HIDDEN LAYERS HEADS KV_HEADS VOCAB   -> ok     (random weights, std 0.02)
  time WHAT BATCH TOKENS THREADS REPS                  -> ms t1 t2 ... (each repetition, ms)
  sgemm N THREADS REPS                                 -> ms t1 t2 ...
  quit
WHAT: forward (logits of the last position, no grad) | fwdbwd (forward with the input
embeddings requiring grad, backward of the last position's top logit to them).
Timings do not depend on weight values, so a model is built from its shape alone.
"""
import sys
import time

try:
    import torch
except ImportError:
    print("absent python3-torch is not installed (apt-get install python3-torch)", flush=True)
    sys.exit(0)


class Llama:
    def __init__(self, dim, hidden, layers, heads, kv_heads, vocab, max_len=1024):
        g = torch.Generator().manual_seed(0)
        r = lambda *s: torch.randn(*s, generator=g) * 0.02
        self.dim, self.heads, self.kv, self.hd = dim, heads, kv_heads, dim // heads
        hd = self.hd
        self.emb = r(vocab, dim)
        self.layers = []
        for _ in range(layers):
            self.layers.append(dict(
                an=torch.ones(dim), wq=r(heads * hd, dim), wk=r(kv_heads * hd, dim),
                wv=r(kv_heads * hd, dim), wo=r(dim, heads * hd), fn=torch.ones(dim),
                w1=r(hidden, dim), w3=r(hidden, dim), w2=r(dim, hidden)))
        self.norm = torch.ones(dim)
        freqs = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        angles = torch.outer(torch.arange(max_len).float(), freqs)
        self.rope = torch.polar(torch.ones_like(angles), angles)

    @staticmethod
    def rmsnorm(x, w, eps=1e-5):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

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
        return self.rmsnorm(x[:, -1], self.norm) @ self.emb.t()


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
        if f[0] == "model":
            dim, hidden, layers, heads, kv, vocab = map(int, f[2:8])
            model = Llama(dim, hidden, layers, heads, kv, vocab)
            print("ok", flush=True)
        elif f[0] == "time":
            what, B, T, threads, reps = f[1], int(f[2]), int(f[3]), int(f[4]), int(f[5])
            torch.set_num_threads(threads)
            g = torch.Generator().manual_seed(1)
            ids = torch.randint(3, vocab, (B, T), generator=g)
            times = []
            for _ in range(reps + 1):  # the first is a warm-up
                emb = model.emb[ids].clone()
                start = time.perf_counter()
                if what == "forward":
                    with torch.no_grad():
                        model.forward(emb)
                else:
                    emb.requires_grad_(True)
                    logits = model.forward(emb)
                    logits.max(-1).values.sum().backward()
                times.append((time.perf_counter() - start) * 1e3)
            print("ms " + " ".join("%.4f" % t for t in times[1:]), flush=True)
        elif f[0] == "sgemm":
            n, threads, reps = int(f[1]), int(f[2]), int(f[3])
            torch.set_num_threads(threads)
            a, b = torch.randn(n, n), torch.randn(n, n)
            times = []
            for _ in range(reps + 1):
                start = time.perf_counter()
                torch.mm(a, b)
                times.append((time.perf_counter() - start) * 1e3)
            print("ms " + " ".join("%.4f" % t for t in times[1:]), flush=True)
        else:
            print("error unknown request " + f[0], flush=True)


if __name__ == "__main__":
    main()
