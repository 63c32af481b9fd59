#!/usr/bin/env python3
"""Checks tools/convert_lpips.py: splitting the parity fixture (official keys) back into a
torchvision-style VGG state dict (features.N.*, plus an ignored classifier.* tensor) and an
LPIPS head file, then converting, gives the fixture back tensor for tensor; wrong inputs stop
with a one-line message. Run: python3 tools/test_convert_lpips.py (needs torch, safetensors)."""
import os, re, subprocess, sys, tempfile

import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "Tests", "Fixtures", "lpips", "weights.safetensors")


def run(*args):
    return subprocess.run([sys.executable, os.path.join(HERE, "convert_lpips.py"), *args], capture_output=True, text=True)


def main():
    ref = load_file(FIXTURE)
    vgg = {re.sub(r"^net\.slice\d\.", "features.", k): v for k, v in ref.items() if k.startswith("net.")}
    vgg["classifier.0.weight"] = torch.zeros(4, 4)
    lin = {k: v for k, v in ref.items() if k.startswith("lin")}
    with tempfile.TemporaryDirectory() as d:
        torch.save(vgg, os.path.join(d, "vgg16.pth"))
        torch.save(lin, os.path.join(d, "vgg.pth"))
        r = run("--vgg", os.path.join(d, "vgg16.pth"), "--lin", os.path.join(d, "vgg.pth"), "--out", os.path.join(d, "out.safetensors"))
        assert r.returncode == 0, r.stderr
        out = load_file(os.path.join(d, "out.safetensors"))
        assert sorted(out) == sorted(ref), set(out) ^ set(ref)
        for k in ref:
            assert out[k].shape == ref[k].shape and torch.equal(out[k], ref[k]), k
        # The heads as lpips.LPIPS().state_dict() names them (lins.K.*) convert the same way.
        torch.save({k.replace("lin", "lins.", 1): v for k, v in lin.items()}, os.path.join(d, "lins.pth"))
        r = run("--vgg", os.path.join(d, "vgg16.pth"), "--lin", os.path.join(d, "lins.pth"), "--out", os.path.join(d, "out2.safetensors"))
        assert r.returncode == 0, r.stderr
        assert all(torch.equal(load_file(os.path.join(d, "out2.safetensors"))[k], ref[k]) for k in ref)
        # Swapped arguments and a head of the wrong width fail with one line.
        r = run("--vgg", os.path.join(d, "vgg.pth"), "--lin", os.path.join(d, "vgg16.pth"), "--out", os.path.join(d, "bad.safetensors"))
        assert r.returncode != 0 and "no features.0.weight" in r.stderr, r.stderr
        bad = dict(lin); bad["lin2.model.1.weight"] = torch.zeros(1, 8, 1, 1)
        torch.save(bad, os.path.join(d, "bad.pth"))
        r = run("--vgg", os.path.join(d, "vgg16.pth"), "--lin", os.path.join(d, "bad.pth"), "--out", os.path.join(d, "bad.safetensors"))
        assert r.returncode != 0 and "stage 3 of the VGG has 32 channels" in r.stderr, r.stderr
    print("convert_lpips: OK")


if __name__ == "__main__":
    main()
