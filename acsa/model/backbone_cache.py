"""The two-stage protocol's first stage: a frozen backbone's outputs, computed once per image.

With `image.frozen` the backbone never changes, so what it gives the trainable heads (the pooled last map,
its body bands and the window-grid pooling of an earlier stage: acsa.model.features.BackboneOutputs) is a
function of the image alone. The embed_images stage computes it here for every image of a split; training
draws, for each row of a batch, one of `image.views` views of its image (view 0 the image itself, the others
flipped and shifted as training's augmentation would, drawn once with a fixed seed), and runs the heads only.

Axes: V views, N images, K body bands, G window cells, C / C' channels of the last / window stage.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from acsa.config.sections import ImageConfig
from acsa.data.image_tables import ImageTable, augmentation_draws, to_model_input, transformed
from acsa.model.features import BackboneOutputs, cat_features
from acsa.model.image_encoder import ImageEncoder

VIEW_SEED = 0  # the augmentation of views 1.. is drawn once, from this seed and the view's index
# Images per forward: small batches keep a MobileNet's activations in the caches (at 256x128 on 2 AVX2 cores,
# 103 images/s at 32 against 75 at 256, under torch.inference_mode; benchmarks.embed_batch, BENCHMARKS.md, k)
BATCH = 32


def view_generator(view: int) -> torch.Generator:
    """The generator of view `view`'s flips and shifts: the same views on every machine and run."""
    seed = int(np.random.SeedSequence([VIEW_SEED, view]).generate_state(1)[0])
    return torch.Generator().manual_seed(seed)


@torch.inference_mode()
def backbone_outputs_of(
    encoder: ImageEncoder,
    images: ImageTable,
    views: int,
    cfg: ImageConfig,
    device: torch.device,
    batch_size: int = BATCH,
    desc: str = "images",
) -> BackboneOutputs:
    """Every image's backbone outputs under `views` views: pooled [V, N, C], bands [V, N, K, C], windows
    [V, N, G, C'] (view 0 unaugmented; views 1.. flipped and shifted as acsa.data.image_tables.augment does,
    with `cfg.hflip` and `cfg.translate`, every image's draw made up front: the outputs do not depend on
    `batch_size`)."""
    encoder.eval()
    per_view = []
    for view in range(views):
        theta = None
        if view > 0:
            theta = augmentation_draws(len(images), cfg.hflip, cfg.translate, view_generator(view))
        parts = []
        for start in tqdm(range(0, len(images), batch_size), desc=f"{desc}, view {view}", leave=False):
            rows = range(start, min(start + batch_size, len(images)))
            pixels = to_model_input(torch.stack([images[i] for i in rows]).to(device))
            if theta is not None:
                pixels = transformed(pixels, theta[start : start + len(rows)])
            parts.append(_to_cpu(encoder.backbone_outputs(pixels)))
        per_view.append(cat_features(parts))
    return BackboneOutputs(
        pooled=torch.stack([v.pooled for v in per_view]),
        bands=torch.stack([v.bands for v in per_view]),
        windows=torch.stack([v.windows for v in per_view]),
    )


def _to_cpu(outputs: BackboneOutputs) -> BackboneOutputs:
    tensors = (outputs.pooled, outputs.bands, outputs.windows)
    return BackboneOutputs(*(x.float().cpu().contiguous() for x in tensors))
