#!/usr/bin/env python3
"""Optional reference: the shapes of `gen bench generation` / `gen bench training` in PyTorch.

Not used by the project or its tests. It builds a SiT with the same layer shapes as the
official model (adaLN-Zero blocks, tanh-GELU MLP, 1-D token or 2-D patch embedding) with
random weights, and times eager float32 forwards on CPU with the same thread count, so that a
user can put the two implementations side by side on their machine:

    pip install torch
    python3 bench/pytorch_reference.py --threads 2 --repeats 3
    .build/release/gen bench generation --threads 2 --repeats 3

Prints one line per variant: seconds per forward (median of --repeats after one warm-up).
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.ada = nn.Linear(d, 6 * d)

    def forward(self, x, c):
        n, t, d = x.shape
        s1, sc1, g1, s2, sc2, g2 = self.ada(F.silu(c)).chunk(6, dim=1)
        h = modulate(self.norm1(x), s1, sc1)
        q, k, v = self.qkv(h).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        h = (a.softmax(-1) @ v).transpose(1, 2).reshape(n, t, d)
        x = x + g1.unsqueeze(1) * self.proj(h)
        h = modulate(self.norm2(x), s2, sc2)
        return x + g2.unsqueeze(1) * self.fc2(F.gelu(self.fc1(h), approximate="tanh"))


class SiT(nn.Module):
    def __init__(self, d=1152, depth=28, heads=16, channels=32, tokens=64, patch=1, two_d=False, classes=1000):
        super().__init__()
        self.two_d, self.patch, self.channels = two_d, patch, channels
        self.x_embed = nn.Conv2d(channels, d, patch, patch) if two_d else nn.Linear(channels, d)
        self.pos = nn.Parameter(torch.zeros(1, tokens, d), requires_grad=False)
        self.t1, self.t2 = nn.Linear(256, d), nn.Linear(d, d)
        self.y = nn.Embedding(classes + 1, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, patch * patch * channels)

    def forward(self, x, t, y):
        if self.two_d:
            n, c, hh, ww = x.shape
            x = self.x_embed(x).flatten(2).transpose(1, 2)
        else:
            n = x.shape[0]
            x = self.x_embed(x)
        x = x + self.pos
        half = 128
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None] * freqs[None]
        c = self.t2(F.silu(self.t1(torch.cat([torch.cos(args), torch.sin(args)], -1)))) + self.y(y)
        for b in self.blocks:
            x = b(x, c)
        shift, scale = self.final_ada(F.silu(c)).chunk(2, dim=1)
        x = self.out(modulate(self.norm(x), shift, scale))
        if self.two_d:
            p, g = self.patch, hh // self.patch
            x = x.reshape(n, g, g, p, p, self.channels).permute(0, 5, 1, 3, 2, 4).reshape(n, self.channels, hh, ww)
        return x


def timed(fn, repeats):
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), min(samples), max(samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-512", action="store_true")
    ap.add_argument("--tokens", help="only these token counts, comma-separated (as gen bench generation --tokens)")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--json", help="also write the forward rows here, for gen bench generation --compare")
    args = ap.parse_args()
    rows = []
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    variants = [
        ("SiT-XL/1, SoftVQ 64 tokens", dict(tokens=64), [1, 2, 8]),
        ("SiT-XL/1, SoftVQ 32 tokens", dict(tokens=32), [1, 8]),
        ("SiT-XL/1, SD-VAE 32x32x4 (1024 tokens)", dict(tokens=1024, channels=4, two_d=True), [1, 2]),
        ("SiT-XL/2, SD-VAE 32x32x4 (256 tokens)", dict(tokens=256, channels=4, patch=2, two_d=True), [1, 8]),
    ]
    if not args.skip_512:
        variants.append(("SiT-XL/1, SD-VAE 64x64x4 (4096 tokens, 512 px)", dict(tokens=4096, channels=4, two_d=True), [1]))
    if args.tokens:
        keep = {int(v) for v in args.tokens.split(",")}
        variants = [v for v in variants if v[1]["tokens"] in keep]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    with torch.no_grad():
        for name, kw, batches in variants:
            model = SiT(**kw).eval()
            for b in batches:
                if kw.get("two_d"):
                    side = int(math.sqrt(kw["tokens"])) * kw.get("patch", 1)
                    x = torch.randn(b, kw["channels"], side, side)
                else:
                    x = torch.randn(b, kw["tokens"], 32)
                t = torch.rand(b)
                y = torch.randint(0, 1000, (b,))
                med, lo, hi = timed(lambda: model(x, t, y), args.repeats)
                print(f"{name} batch {b}: {med:.4f} s/forward (min {lo:.4f}, max {hi:.4f})")
                rows.append(dict(name=f"PyTorch {torch.__version__} fp32", model=name, tokens=kw["tokens"], batch=b,
                                 seconds=med, min=lo, max=hi, images_per_s=b / med, threads=torch.get_num_threads()))
            del model
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    if args.skip_training:
        return
    # One SiT-B/1 training step: 64 tokens x 32 channels, batch 16, AdamW.
    model = SiT(d=768, depth=12, heads=12, tokens=64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, t, y = torch.randn(16, 64, 32), torch.rand(16), torch.randint(0, 1000, (16,))

    def step():
        opt.zero_grad()
        loss = (model(x, t, y) - x).pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    med, lo, hi = timed(step, args.repeats)
    print(f"SiT-B/1 training step (64 tokens, batch 16, AdamW): {med:.3f} s (min {lo:.3f}, max {hi:.3f})")


if __name__ == "__main__":
    main()
