"""Training throughput of image-encoder candidates on the CPU (forward + backward + AdamW step).

    python benchmarks/backbone_speed.py [--batch 48] [--rounds 8] [--threads 2] [--only NAME ...]

Each candidate is the full `ImageEncoder` (backbone + global neck + region and window heads, 7 tokens) built
from a timm name + kwargs, as params.yaml would configure it. The candidates take turns step by step (round
robin) and the median step is reported, so that load from other processes on shared cores hits all of them
alike. Logs samples/s per candidate.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch

from acsa.config.sections import ImageConfig
from acsa.model.image_encoder import ImageEncoder

CANDIDATES = {
    "acsa_convnet": ("acsa_convnet", {}),  # resnet10t, channels 32-64-128-256, stem width 16
    "acsa_convnet_os16": ("acsa_convnet", {"output_stride": 16}),  # last map 8x4 instead of 4x2
    "resnet10t_48": ("resnet10t", {"channels": [48, 96, 192, 384], "stem_width": 24}),
    "resnet18_32": ("resnet18", {"channels": [32, 64, 128, 256]}),
    "swin_48_3stage": (
        "swin_tiny_patch4_window7_224",
        {"embed_dim": 48, "depths": [2, 2, 2], "num_heads": [3, 6, 12], "window_size": 4},
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=8, help="timed steps per candidate, after 2 warm-up")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--only", nargs="*", default=list(CANDIDATES), choices=list(CANDIDATES))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)

    models, optimizers, times = {}, {}, {key: [] for key in args.only}
    for key in args.only:
        name, kwargs = CANDIDATES[key]
        cfg = ImageConfig(backbone=name, backbone_kwargs=kwargs, height=args.height, width=args.width)
        models[key] = ImageEncoder(cfg, embed_dim=256, dropout=0.5).train()
        optimizers[key] = torch.optim.AdamW(models[key].parameters(), lr=1e-4)
    images = torch.randn(args.batch, 3, args.height, args.width)
    for _ in range(args.rounds + 2):
        for key in args.only:
            start = time.perf_counter()
            feats = models[key](images)
            loss = feats.global_feat.square().mean() + feats.tokens.square().mean()
            optimizers[key].zero_grad(set_to_none=True)
            loss.backward()
            optimizers[key].step()
            times[key].append(time.perf_counter() - start)
    for key in args.only:
        params = sum(p.numel() for p in models[key].parameters())
        steps = times[key][2:]
        logging.info(
            "%-16s %5.2fM params  median %6.1f  best %6.1f samples/s train",
            key,
            params / 1e6,
            args.batch / statistics.median(steps),
            args.batch / min(steps),
        )


if __name__ == "__main__":
    main()
