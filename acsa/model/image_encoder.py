"""The image encoder: a timm backbone's feature maps -> a global embedding and multi-scale image tokens
(mean, body regions, windows; docs/method.md, section 1).

Axis legend (names used in the comments below):
    b  batch          c  channels of a backbone feature map    h, w  feature-map rows and columns
    d  embed_dim      k  body regions (head, upper, lower, feet)    r  image tokens
"""

from __future__ import annotations

import logging
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acsa.config.rules import check_backbone_weights
from acsa.config.sections import ImageConfig
from acsa.errors import ConfigError, one_line
from acsa.model.backbone_weights import load_backbone_weights
from acsa.model.features import BackboneOutputs, ImageFeatures
from acsa.paths import resolve_backbone_weights

log = logging.getLogger(__name__)

REGION_NAMES = ("head", "upper", "lower", "feet")

# `parts: stripes` (paper): body regions as horizontal bands, in fractions of the image height (top = 0).
# Pedestrian crops are tight (head at the top edge, feet at the bottom); a standing adult is ~7.5 heads tall,
# so the head takes the top ~15-20%, the torso (shoulders to hips) down to ~55%, legs to ~90%, feet below.
# Neighbouring bands overlap a little so that a slightly shifted or scaled person still lands in each band.
# Rows of the feature map are weighted by how much of each row a band covers, so the bands mean the same
# thing at any map height (4 rows for a 128x64 input at stride 32, 12 rows for 384x128).
STRIPE_BANDS = ((0.0, 0.2), (0.15, 0.55), (0.5, 0.9), (0.85, 1.0))

# `parts: channels` (released code): the pooled last-stage vector is cut into six equal chunks c0..c5 and
# each region is a *contiguous run of chunks* (head = c0..c1, upper = c1..c2 overlapping the head on c1,
# lower = c3..c4, feet = c5), i.e. "+" is concatenation: every region keeps its own channels and gets its own
# Linear. Summing chunks instead would add unrelated channels elementwise, which has no meaning for
# channels of a pooled vector. Half-open ranges of chunk indices:
CHANNEL_CHUNKS = ((0, 2), (1, 3), (3, 5), (5, 6))
NUM_CHANNEL_CHUNKS = 6

# Backbone aliases: a project name -> (timm model name, default kwargs). The config may override any kwarg.
# acsa_convnet: a narrow ResNet-10-T (deep stem, 4 stages of one BasicBlock each, 1.2M parameters), the
# fastest candidate on 2 CPU cores that trains from scratch in minutes (benchmarks/backbone_speed.py).
BACKBONE_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "acsa_convnet": ("resnet10t", {"channels": (32, 64, 128, 256), "stem_width": 16}),
}


def _as_tuples(kwargs: dict[str, Any]) -> dict[str, Any]:
    """YAML gives lists; timm constructors expect tuples for sizes, depths, heads and channels."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def create_backbone(
    name: str, kwargs: dict[str, Any], height: int, width: int, pretrained_path: str | None = None
) -> nn.Module:  # features_only timm model
    """A timm model by name + kwargs returning multi-stage feature maps (`features_only=True`).

    Never downloads: weights come only from `pretrained_path` (acsa.model.backbone_weights reads it, renaming
    a known foreign layout), passed to timm as a state dict so that timm's own checkpoint filter adapts them
    (e.g. Swin's relative-position tables when the window size changes, the classifier dropped). timm loads
    some feature extractors non-strictly (MobileNet, EfficientNet), so the loaded weights are compared with a
    random initialisation drawn the same way: a weight the file left as drawn (a file of another
    architecture) is a one-line ConfigError. Models with a fixed input size (Swin, ViT) are built for
    `height` x `width`.
    """
    model_kwargs: dict[str, Any] = {}
    if name not in BACKBONE_ALIASES and not timm.is_model(name):
        aliases = ", ".join(BACKBONE_ALIASES)
        raise ConfigError(f"image.backbone: {name!r} is not a timm model (nor {aliases})")
    if name in BACKBONE_ALIASES:
        name, model_kwargs = BACKBONE_ALIASES[name]
        model_kwargs = dict(model_kwargs)
    model_kwargs.update(_as_tuples(kwargs))
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None and cfg.fixed_input_size:
        model_kwargs.setdefault("img_size", (height, width))
    if not pretrained_path:
        return _create(name, kwargs, pretrained=False, features_only=True, **model_kwargs)
    state = load_backbone_weights(pretrained_path, name)
    log.info("backbone %s: loading weights from %s", name, pretrained_path)
    where = f"image.pretrained_path: {pretrained_path}"
    with torch.random.fork_rng():  # both draw the same random initialisation
        torch.manual_seed(0)
        fresh = _create(name, kwargs, pretrained=False, features_only=True, **model_kwargs)
        torch.manual_seed(0)
        try:
            model = _create(
                name, kwargs, pretrained=True, features_only=True,
                pretrained_cfg_overlay={"state_dict": state}, **model_kwargs,
            )  # fmt: skip
        except RuntimeError as err:  # strict loading: missing, unexpected or mis-shaped keys
            raise ConfigError(f"{where} does not hold weights of {name} ({one_line(err)[:300]})") from None
    # random draws only: constant initial values (BatchNorm's ones and zeros) may be loaded unchanged
    drawn = {key: value for key, value in fresh.named_parameters() if value.min() < value.max()}
    untouched = [
        key for key, value in model.named_parameters() if key in drawn and torch.equal(value, drawn[key])
    ]
    if untouched:
        raise ConfigError(
            f"{where} left {len(untouched)} of the {len(drawn)} randomly drawn weights of {name} as drawn "
            f"(e.g. {', '.join(untouched[:3])}): not weights of this architecture"
        )
    return model


def _create(name: str, kwargs: dict[str, Any], **options: Any) -> nn.Module:
    """timm.create_model, a keyword the constructor does not take being a one-line ConfigError."""
    try:
        return timm.create_model(name, **options)
    except TypeError as err:
        why = one_line(err)
        raise ConfigError(f"image.backbone_kwargs: {name} does not accept {kwargs} ({why})") from None


def band_weights(height: int, bands: tuple[tuple[float, float], ...], like: Tensor) -> Tensor:
    """[K, height] weights: share of each band's extent covered by each feature-map row (rows sum to 1)."""
    edges = torch.arange(height + 1, device=like.device, dtype=like.dtype) / height
    top, bottom = edges[:-1], edges[1:]  # [h] row extents
    lo = like.new_tensor([b[0] for b in bands])[:, None]
    hi = like.new_tensor([b[1] for b in bands])[:, None]
    overlap = (torch.minimum(bottom, hi) - torch.maximum(top, lo)).clamp_min(0)  # [k, h]
    return overlap / overlap.sum(dim=1, keepdim=True)


def _head(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))


def bn_neck(dim: int) -> nn.BatchNorm1d:
    """BatchNorm1d with a frozen (zero) bias, the re-id "BNNeck"."""
    neck = nn.BatchNorm1d(dim)
    neck.bias.requires_grad_(False)
    return neck


class ImageEncoder(nn.Module):
    """Backbone feature maps -> global embedding + region and window tokens."""

    def __init__(
        self,
        cfg: ImageConfig,
        embed_dim: int,
        dropout: float,
        use_regions: bool = True,
        use_windows: bool = True,
        pretrained: bool = True,
        use_image_token: bool = True,
    ) -> None:
        """`pretrained=False` ignores `cfg.pretrained_path` (for a model whose checkpoint has the weights);
        otherwise `cfg.init: pretrained` needs the weights file (acsa.config.check_backbone_weights).
        `use_image_token=False` leaves the image-level token out of the token set (region and window tokens
        only); without region and window tokens the global embedding is the only token, so it needs one."""
        super().__init__()
        if not (use_image_token or use_regions or use_windows):
            raise ValueError("use_image_token, use_regions and use_windows all false leave no image token")
        self.parts = cfg.parts
        self.use_regions = use_regions
        self.use_windows = use_windows
        self.use_image_token = use_image_token
        self.window_grid = tuple(cfg.window_grid)
        if pretrained:
            check_backbone_weights(cfg)
        weights = None
        if pretrained and cfg.init == "pretrained" and cfg.pretrained_path is not None:
            weights = str(resolve_backbone_weights(cfg.pretrained_path))
        self.backbone = create_backbone(cfg.backbone, cfg.backbone_kwargs, cfg.height, cfg.width, weights)
        # `image.frozen`: the backbone keeps its (pretrained) weights and BatchNorm statistics; only the heads
        # train, so its outputs can be computed once per image (acsa.model.backbone_cache)
        self.frozen = cfg.frozen
        if self.frozen:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        fmt = getattr(self.backbone, "output_fmt", "NCHW")  # timm's MobileNet features have none
        self.nhwc_maps = str(getattr(fmt, "value", fmt)) == "NHWC"  # timm Swin returns [b, h, w, c]
        # A convolutional backbone gets its input in channels_last, and its activations follow: oneDNN's CPU
        # convolutions, BatchNorm and max-pooling are faster in it (BENCHMARKS.md, training throughput); the
        # values are the same up to float rounding. The weights stay contiguous, as their gradients and
        # optimizer state then do: fused AdamW assumes a parameter and its state share one layout (a
        # channels_last weight with the contiguous state a checkpoint restores is updated wrongly). Swin
        # lays out its own tensors.
        self.memory_format = torch.contiguous_format if self.nhwc_maps else torch.channels_last
        channels = self.backbone.feature_info.channels()
        num_stages = len(channels)
        if not -num_stages <= cfg.window_stage < num_stages:
            raise ConfigError(
                f"image.window_stage: {cfg.window_stage} outside the {num_stages} feature stages"
            )
        self.window_stage = cfg.window_stage % num_stages
        if len(self.window_grid) != 2 or min(self.window_grid) < 1:
            raise ConfigError(f"image.window_grid: expected [rows, cols] >= 1, got {list(cfg.window_grid)}")
        last = channels[-1]

        self.global_proj = nn.Linear(last, embed_dim)
        self.global_neck = bn_neck(embed_dim)
        if cfg.parts == "channels":
            # chunk edges; equal chunks when 6 divides the width (Swin-T: 768 = 6 x 128), else within one
            edges = [round(j * last / NUM_CHANNEL_CHUNKS) for j in range(NUM_CHANNEL_CHUNKS + 1)]
            self.region_slices = [(edges[a], edges[b]) for a, b in CHANNEL_CHUNKS]
            region_dims = [b - a for a, b in self.region_slices]
        elif cfg.parts == "stripes":
            region_dims = [last] * len(REGION_NAMES)
        else:
            raise ConfigError(f"image.parts: {cfg.parts!r} is not one of stripes, channels")
        self.region_heads = nn.ModuleList(_head(dim, embed_dim, dropout) for dim in region_dims)
        # windows are interchangeable (any grid), so they share one head
        self.window_head = _head(channels[self.window_stage], embed_dim, dropout)

        if use_regions or use_windows:
            self.token_names = ["mean"] if use_image_token else []
        else:
            self.token_names = ["global"]
        if use_regions:
            self.token_names += list(REGION_NAMES)
        if use_windows:
            rows, cols = self.window_grid
            self.token_names += [f"window_r{i}c{j}" for i in range(rows) for j in range(cols)]

    def feature_maps(self, images: Tensor) -> list[Tensor]:
        """Backbone stages as NCHW maps [b, c, h, w] (their strides follow the memory format)."""
        maps = self.backbone(images.contiguous(memory_format=self.memory_format))
        if self.nhwc_maps:
            maps = [m.permute(0, 3, 1, 2) for m in maps]  # b h w c -> b c h w
        return maps

    def backbone_outputs(self, images: Tensor) -> BackboneOutputs:
        """images [b, 3, H, W] -> the pooled maps the heads read (what `image.frozen` caches)."""
        maps = self.feature_maps(images)
        last = maps[-1]
        weights = band_weights(last.shape[2], STRIPE_BANDS, last)  # [k, h]
        return BackboneOutputs(
            pooled=last.mean(dim=(2, 3)),  # [b, c]
            bands=torch.einsum("bchw,kh->bkc", last, weights) / last.shape[3],  # [b, k, c]
            windows=F.adaptive_avg_pool2d(maps[self.window_stage], self.window_grid)
            .flatten(2)
            .transpose(1, 2),  # b c h w -> b (h w) c
        )

    def regions(self, outputs: BackboneOutputs) -> Tensor:
        """[b, k=4, d] head, upper, lower, feet tokens."""
        if self.parts == "stripes":
            inputs = outputs.bands.unbind(1)
        else:
            inputs = [outputs.pooled[:, a:b] for a, b in self.region_slices]
        return torch.stack([head(x) for head, x in zip(self.region_heads, inputs, strict=True)], dim=1)

    def heads(self, outputs: BackboneOutputs) -> ImageFeatures:
        """The trainable part: pooled maps -> global embedding [b, d] and the image token set [b, r, d]."""
        global_feat = self.global_neck(self.global_proj(outputs.pooled))
        tokens = []
        if self.use_regions:
            tokens.append(self.regions(outputs))
        if self.use_windows:
            tokens.append(self.window_head(outputs.windows))  # [b, g, d]
        if not tokens:  # no region or window tokens: the global embedding is the only token
            return ImageFeatures(global_feat=global_feat, tokens=global_feat[:, None])
        token_set = torch.cat(tokens, dim=1)  # [b, r, d] sub-image tokens: regions..., windows...
        if self.use_image_token:  # [mean, regions..., windows...]: [b, r + 1, d]
            token_set = torch.cat([token_set.mean(dim=1, keepdim=True), token_set], dim=1)
        return ImageFeatures(global_feat=global_feat, tokens=token_set)

    def forward(self, images: Tensor | BackboneOutputs) -> ImageFeatures:
        """Images [b, 3, H, W], or their backbone outputs (cached for a frozen backbone) -> features."""
        if not isinstance(images, BackboneOutputs):
            images = self.backbone_outputs(images)
        return self.heads(images)

    def train(self, mode: bool = True) -> ImageEncoder:
        """A frozen backbone stays in eval mode (its BatchNorm statistics are the pretrained ones)."""
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self
