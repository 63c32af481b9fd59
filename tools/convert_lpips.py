#!/usr/bin/env python3
"""Converts VGG16 + LPIPS linear-head weights into one safetensors file for `LPIPS.load`.

The official tokenizer recipe (continuous_tokenizer, modelling/lpips/lpips.py) builds LPIPS from
torchvision's ImageNet VGG16 (`models.vgg16(pretrained=True).features`) plus five 1x1 "lin"
heads from `vgg.pth` (downloaded from the URL in lpips.py; the same file, md5
d507d7349b931f0638a25a48a722f98a, ships in the `lpips` PyPI package as
lpips/weights/v0.1/vgg.pth). This script writes every tensor of the official LPIPS
state_dict() under its official key:

  scaling_layer.shift, scaling_layer.scale     (1, 3, 1, 1) constants of ScalingLayer
  net.slice1.0.weight ... net.slice5.28.bias   VGG16 features[0..<30] convolutions
  lin0.model.1.weight ... lin4.model.1.weight  (1, C_l, 1, 1)

Inputs:
  --vgg  torchvision VGG16 weights (vgg16-397923af.pth: keys features.N.weight/bias, the
         classifier.* keys are ignored), or any state dict with features.N.* keys
  --lin  the LPIPS heads (vgg.pth: keys linK.model.1.weight; lins.K.model.1.weight as in
         lpips.LPIPS().state_dict() is accepted too)
  --out  output .safetensors

Needs torch and safetensors. Widths are read from the weights, so narrow VGGs convert too.
"""
import argparse, sys

import torch
from safetensors.torch import save_file

# torchvision vgg16().features: convolutions at these indices, ReLU after each, max pools at
# 4, 9, 16, 23; LPIPS's slices are features[0:4], [4:9], [9:16], [16:23], [23:30].
SLICES = [(1, [0, 2]), (2, [5, 7]), (3, [10, 12, 14]), (4, [17, 19, 21]), (5, [24, 26, 28])]
SHIFT = [-0.030, -0.088, -0.188]
SCALE = [0.458, 0.448, 0.450]


def load_state(path):
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        sys.exit(f"{path} does not hold a state dict")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


def convert(vgg, lin):
    out = {
        "scaling_layer.shift": torch.tensor(SHIFT, dtype=torch.float32).reshape(1, 3, 1, 1),
        "scaling_layer.scale": torch.tensor(SCALE, dtype=torch.float32).reshape(1, 3, 1, 1),
    }
    channels, stage_widths = 3, []
    for s, indices in SLICES:
        for i in indices:
            w, b = vgg.get(f"features.{i}.weight"), vgg.get(f"features.{i}.bias")
            if w is None or b is None:
                sys.exit(f"the VGG weights have no features.{i}.weight / .bias: not a torchvision VGG16 state dict")
            if w.dim() != 4 or w.shape[1] != channels or tuple(w.shape[2:]) != (3, 3) or tuple(b.shape) != (w.shape[0],):
                sys.exit(f"features.{i}.weight has shape {tuple(w.shape)}, expected (O, {channels}, 3, 3): not VGG16")
            out[f"net.slice{s}.{i}.weight"] = w.float().contiguous()
            out[f"net.slice{s}.{i}.bias"] = b.float().contiguous()
            channels = w.shape[0]
        stage_widths.append(channels)
    for k, c in enumerate(stage_widths):
        w = lin.get(f"lin{k}.model.1.weight", lin.get(f"lins.{k}.model.1.weight"))
        if w is None:
            sys.exit(f"the head weights have no lin{k}.model.1.weight: not an LPIPS vgg.pth")
        if tuple(w.shape) != (1, c, 1, 1):
            sys.exit(f"lin{k}.model.1.weight has shape {tuple(w.shape)} but stage {k + 1} of the VGG has {c} channels")
        out[f"lin{k}.model.1.weight"] = w.float().contiguous()
    return out, stage_widths


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vgg", required=True)
    ap.add_argument("--lin", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    tensors, widths = convert(load_state(args.vgg), load_state(args.lin))
    save_file(tensors, args.out, metadata={"format": "lpips-vgg16", "stage_channels": ",".join(map(str, widths))})
    print(f"wrote {args.out}: {len(tensors)} tensors, stage channels {widths}")


if __name__ == "__main__":
    main()
