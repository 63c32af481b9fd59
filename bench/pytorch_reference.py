#!/usr/bin/env python3
"""Optional reference: the shapes of `gen bench generation|training|tokenizer` in PyTorch.

Not used by the project or its tests. It builds a SiT with the same layer shapes as the
official model (adaLN-Zero blocks, tanh-GELU MLP, 1-D token or 2-D patch embedding) and a
SoftVQ-style tokenizer (ViT encoder with latent query tokens, soft quantization, ViT decoder
with mask tokens) with random weights, and times eager forwards on CPU with the same thread
count, so that a user can put the two implementations side by side on their machine:

    pip install torch
    python3 bench/pytorch_reference.py --threads 2 --repeats 3            # float32
    python3 bench/pytorch_reference.py --threads 2 --repeats 3 --bf16     # bf16 autocast
    .build/release/gen bench generation --threads 2 --repeats 3

Attention is F.scaled_dot_product_attention, as in the official SiT (timm's Attention with
fused_attn=True) and timm's ViT blocks; --attention manual gives the written-out
softmax(q k^T) v instead. --bf16 runs every forward (and the training step's forward and
loss) under torch.autocast("cpu", dtype=torch.bfloat16), the mixed precision a PyTorch user
gets on a CPU with AVX512-BF16 or AMX; weights stay float32 and are converted per call.

Prints one line per variant: seconds per forward (median of --repeats after one warm-up).
"""
import argparse
import json
import math
import statistics
import time

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F

ATTENTION = "sdpa"


def attention(q, k, v):
    """softmax(q k^T / sqrt(d)) v over (N, H, T, Dh)."""
    if ATTENTION == "sdpa":
        return F.scaled_dot_product_attention(q, k, v)
    a = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    return a.softmax(-1) @ v


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
        h = attention(q, k, v).transpose(1, 2).reshape(n, t, d)
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


class ViTBlock(nn.Module):
    """timm's pre-norm ViT block (DINOv2 style): LayerNorm eps 1e-6, qkv with bias, exact GELU,
    LayerScale."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d, eps=1e-6), nn.LayerNorm(d, eps=1e-6)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.ls1, self.ls2 = nn.Parameter(torch.full((d,), 1e-5)), nn.Parameter(torch.full((d,), 1e-5))

    def forward(self, x):
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.ls1 * self.proj(attention(q, k, v).transpose(1, 2).reshape(n, t, d))
        return x + self.ls2 * self.fc2(F.gelu(self.fc1(self.norm2(x))))


class SoftVQ(nn.Module):
    """SoftVQ-VAE shapes (SoftVQ-L-64 by default: ViT-L encoder and decoder, patch 16, 64 latent
    tokens, codebook 8192 x 32 split over 4 codebooks, tau 0.07)."""

    def __init__(self, d=1024, depth=24, heads=16, image=256, patch=16, tokens=64, codebook=8192, dim=32, books=4):
        super().__init__()
        self.patch, self.grid, self.books, self.tokens = patch, image // patch, books, tokens
        n = self.grid * self.grid
        self.patch_embed = nn.Conv2d(3, d, patch, patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.randn(1, 1 + n, d) * 0.02)
        self.latent = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
        self.latent_pos = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
        self.enc = nn.ModuleList(ViTBlock(d, heads) for _ in range(depth))
        self.enc_norm = nn.LayerNorm(d, eps=1e-6)
        self.quant_conv = nn.Linear(d, dim)
        self.codebook = nn.Parameter(torch.randn(books, codebook // books, dim))
        self.post_quant_conv = nn.Linear(dim, d)
        self.mask = nn.Parameter(torch.zeros(1, 1, d))
        self.dec_cls = nn.Parameter(torch.zeros(1, 1, d))
        self.dec_pos = nn.Parameter(torch.randn(1, 1 + n, d) * 0.02)
        self.dec_latent_pos = nn.Parameter(torch.randn(1, tokens, d) * 0.02)
        self.dec = nn.ModuleList(ViTBlock(d, heads) for _ in range(depth))
        self.dec_norm = nn.LayerNorm(d, eps=1e-6)
        self.to_pixel = nn.Linear(d, patch * patch * 3)

    def encode(self, img):
        b = img.shape[0]
        x = self.patch_embed(img).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(b, -1, -1), x], 1) + self.pos
        x = torch.cat([x, (self.latent + self.latent_pos).expand(b, -1, -1)], 1)
        for blk in self.enc:
            x = blk(x)
        z = self.quant_conv(self.enc_norm(x)[:, -self.tokens:])
        z = F.normalize(z, dim=-1).reshape(b, self.books, self.tokens // self.books, -1)
        e = F.normalize(self.codebook, dim=-1)
        probs = (torch.einsum("bgtc,gkc->bgtk", z, e) / 0.07).softmax(-1)
        return torch.einsum("bgtk,gkc->bgtc", probs, e).reshape(b, self.tokens, -1)

    def decode(self, zq):
        b, n = zq.shape[0], self.grid * self.grid
        x = torch.cat([self.dec_cls.expand(b, -1, -1), self.mask.expand(b, n, -1)], 1) + self.dec_pos
        x = torch.cat([x, self.post_quant_conv(zq) + self.dec_latent_pos], 1)
        for blk in self.dec:
            x = blk(x)
        x = self.to_pixel(self.dec_norm(x)[:, 1:1 + n])
        p, g = self.patch, self.grid
        return x.reshape(b, g, g, p, p, 3).permute(0, 5, 1, 3, 2, 4).reshape(b, 3, g * p, g * p)


def timed(fn, repeats):
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), min(samples), max(samples)


def main():
    global ATTENTION
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-512", action="store_true")
    ap.add_argument("--tokens", help="only these token counts, comma-separated (as gen bench generation --tokens)")
    ap.add_argument("--skip-training", action="store_true")
    ap.add_argument("--json", help="also write the forward rows here, for gen bench generation --compare")
    ap.add_argument("--skip-generation", action="store_true", help="leave out the SiT forwards")
    ap.add_argument("--tokenizer", action="store_true", help="also time SoftVQ-L-64 encode and decode of one 256 px image")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (mixed precision) instead of float32")
    ap.add_argument("--attention", choices=["sdpa", "manual"], default="sdpa",
                    help="F.scaled_dot_product_attention (the official fused_attn path) or softmax(q k^T) v written out")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes: proves the script runs (seconds)")
    args = ap.parse_args()
    ATTENTION = args.attention
    rows = []
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    precision = "bf16 autocast" if args.bf16 else "float32"

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()

    xl = dict(d=64, depth=2, heads=4) if args.tiny else {}
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
    if args.skip_generation:
        variants = []
    shapes = ", TINY shapes (names as in the full run; timings meaningless)" if args.tiny else ""
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {precision}, attention {ATTENTION}{shapes}")
    with torch.no_grad():
        for name, kw, batches in variants:
            model = SiT(**kw, **xl).eval()
            for b in batches:
                if kw.get("two_d"):
                    side = int(math.sqrt(kw["tokens"])) * kw.get("patch", 1)
                    x = torch.randn(b, kw["channels"], side, side)
                else:
                    x = torch.randn(b, kw["tokens"], 32)
                t = torch.rand(b)
                y = torch.randint(0, 1000, (b,))

                def forward():
                    with autocast():
                        return model(x, t, y)

                med, lo, hi = timed(forward, args.repeats)
                print(f"{name} batch {b} ({precision}): {med:.4f} s/forward (min {lo:.4f}, max {hi:.4f})")
                rows.append(dict(name=f"PyTorch {torch.__version__} {precision}", model=name, tokens=kw["tokens"], batch=b,
                                 seconds=med, min=lo, max=hi, images_per_s=b / med, threads=torch.get_num_threads()))
            del model
        if args.tokenizer:
            tok = SoftVQ(d=64, depth=2, heads=4) if args.tiny else SoftVQ()
            tok.eval()
            img = torch.rand(1, 3, 256, 256) * 2 - 1
            with autocast():
                zq = tok.encode(img)

            def encode():
                with autocast():
                    return tok.encode(img)

            def decode():
                with autocast():
                    return tok.decode(zq)

            for what, fn in (("encode", encode), ("decode", decode)):
                med, lo, hi = timed(fn, args.repeats)
                print(f"SoftVQ-L-64 {what}, 256 px, batch 1 ({precision}): {med:.4f} s (min {lo:.4f}, max {hi:.4f})")
            del tok
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    if args.skip_training:
        return
    # One SiT-B/1 training step: 64 tokens x 32 channels, batch 16, AdamW.
    model = SiT(**(dict(d=64, depth=2, heads=4) if args.tiny else dict(d=768, depth=12, heads=12)), tokens=64)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, t, y = torch.randn(16, 64, 32), torch.rand(16), torch.randint(0, 1000, (16,))

    def step():
        opt.zero_grad()
        with autocast():
            out = model(x, t, y)
        loss = (out.float() - x).pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    med, lo, hi = timed(step, args.repeats)
    print(f"SiT-B/1 training step (64 tokens, batch 16, AdamW, {precision}): {med:.3f} s (min {lo:.3f}, max {hi:.3f})")


if __name__ == "__main__":
    main()
