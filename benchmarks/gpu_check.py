"""GPU-scale check on random data (no dataset, no weights), made to finish within 8 minutes on one H100.

    PYTHONPATH=. python benchmarks/gpu_check.py [--budget-s 420] [--out benchmarks/results/gpu_check.json]
    PYTHONPATH=. python benchmarks/gpu_check.py --preset released_code   # the released code's configuration
    PYTHONPATH=. python benchmarks/gpu_check.py --tiny      # CPU smoke run at a tiny size (the test suite)

Needs only what the GPU machine has preinstalled (torch, timm, transformers); the repository goes on
PYTHONPATH, nothing is installed.

1. Training throughput of the paper configuration (params.yaml preset `paper`: Swin-T at 384x128 and
   BERT-base; `--preset released_code`: Swin-T at 224x224, both attention directions, channel regions),
   with random weights (no weights file is read; the speed is the same: the presets' `image.init:
   pretrained` asks for ImageNet weights only when training for real) and the text encoder frozen (cached
   features), images decoded from JPEG bytes by a DataLoader as in training. Speed options are tried one
   at a time on top of the best so far and kept when they win (>= 2% more pairs/s): bf16 autocast,
   DataLoader workers, channels_last, fused AdamW, torch.compile (image and text encoders). Then the
   fine-tuned text encoder with the winning options, and the winning options at batch 64.
2. Local similarity at CUHK-PEDES test size (6,156 captions x 3,074 images, 7 x 10 tokens, d = 768;
   structured random features, benchmarks/problems.py): exact (score_pairwise) and global top-128 re-rank
   (score_candidates) of acsa's cross-attention (or the versions in --implementations), their
   agreement, fused R@1/5/10 (weight 0.5), and an fp32 matmul reference rate.
3. Projection: time per CUHK-PEDES epoch (68,126 pairs) and for a run of the preset's `train.epochs` (20)
   at the measured rates.

Parts that would overrun `--budget-s` are skipped and marked so. Writes a JSON summary and prints tables.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.data import DataLoader, Dataset, Sampler  # noqa: E402

from acsa.cli import add_params_options  # noqa: E402
from acsa.config.loading import apply_overrides, params_from_dict
from acsa.config.sections import params_to_dict  # noqa: E402
from acsa.scoring.metrics import rank_metrics  # noqa: E402
from acsa.scoring.retrieval import Scores  # noqa: E402
from benchmarks.common import (  # noqa: E402
    IMPLEMENTATION_HELP,
    RESULTS,
    format_table,
    machine_info,
    matmul_rate,
    sync,
    timed,
    write_json,
)
from benchmarks.problems import CUHK_TEST, make_problem, tied_cross_attention  # noqa: E402
from benchmarks.training import (  # noqa: E402
    TRAIN_IDS,
    Batch,
    build_model,
    load_config,
    make_optimizer,
    text_hidden_size,
    train_step,
)

log = logging.getLogger("gpu_check")
CUHK_TRAIN_PAIRS = 68_126
OPTIONS = ("bf16", "workers", "channels_last", "fused_adamw", "compile")
PRESETS = ("paper", "released_code")  # params.yaml presets for a GPU (docs/presets.md)
TINY_OVERRIDES = {
    "image.backbone": "resnet10t",
    "image.backbone_kwargs": {"channels": [8, 16, 32, 64], "stem_width": 8},
    "image.height": 64,
    "image.width": 32,
    "model.embed_dim": 32,
    "data.num_phrases": 4,
    "data.caption_max_tokens": 12,
    "data.phrase_max_tokens": 6,
}


class JpegImages(Dataset):
    """`count` random RGB images kept as JPEG bytes and decoded on access (PIL), like an image folder."""

    def __init__(self, count: int, height: int, width: int, seed: int = 0) -> None:
        from PIL import Image

        generator = torch.Generator().manual_seed(seed)
        self.blobs = []
        for _ in range(count):
            pixels = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels.numpy()).save(buffer, format="JPEG", quality=90)
            self.blobs.append(buffer.getvalue())

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        import numpy as np
        from PIL import Image

        image = Image.open(io.BytesIO(self.blobs[index])).convert("RGB")
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1), index


class PairBatches(Sampler[list[int]]):
    """Endless identity-structured batches: batch/2 identities x 2 images (random rows)."""

    def __init__(self, size: int, batch: int, seed: int = 0) -> None:
        self.size, self.batch, self.seed = size, batch, seed

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        while True:
            yield torch.randint(0, self.size, (self.batch,), generator=generator).tolist()

    def __len__(self) -> int:
        return 1 << 30


def measure_training(
    params,
    batch: int,
    options: dict[str, Any],
    device: torch.device,
    steps: int,
    warmup: int,
    bert_config=None,
) -> dict[str, Any]:
    """pairs/s of `steps` optimizer steps after `warmup` ones, data from a DataLoader of JPEG images."""
    torch.manual_seed(0)
    model = build_model(params, TRAIN_IDS["paper"], bert_config).to(device).train()
    # the option decides the layout of the backbone's input (a convnet's default is channels_last, Swin's
    # contiguous): weights as well, on the GPU (cuDNN prefers both in one layout)
    layout = torch.channels_last if options["channels_last"] else torch.contiguous_format
    model.image_encoder.memory_format = layout
    model.image_encoder.backbone.to(memory_format=layout)
    if options["compile"]:
        model.image_encoder = torch.compile(model.image_encoder)
        if model.text_encoder is not None:
            model.text_encoder = torch.compile(model.text_encoder)
    optimizer = make_optimizer(model, params, fused=options["fused_adamw"])
    images = JpegImages(max(16, 2 * batch), params.image.height, params.image.width)
    hidden = text_hidden_size(params, bert_config)
    bank = text_bank(params, len(images), hidden)
    workers = options["workers"]
    loader = DataLoader(
        images,
        batch_sampler=PairBatches(len(images), batch),
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
    labels = (torch.arange(batch) // 2).to(device)
    generator = torch.Generator().manual_seed(0)
    precision = "bf16" if options["bf16"] else "fp32"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    batches = iter(loader)
    times = []
    for step in range(warmup + steps):
        sync(device)
        start = time.perf_counter()
        pixels, rows = next(batches)
        text = {k: v[rows].to(device, non_blocking=True) for k, v in bank.items()}
        data = Batch(pixels.to(device, non_blocking=True), labels, text)
        loss = train_step(model, optimizer, data, params, generator, precision)
        if step == warmup - 1 or step == warmup + steps - 1:
            loss = float(loss)  # synchronises; a non-finite loss is reported, not hidden
        sync(device)
        times.append(time.perf_counter() - start)
    del batches, loader
    timed = times[warmup:]
    result = {
        "batch": batch,
        "steps": steps,
        "warmup_s": sum(times[:warmup]),
        "step_s": sum(timed) / len(timed),
        "pairs_per_s": batch * len(timed) / sum(timed),
        "final_loss": float(loss),
    }
    if device.type == "cuda":
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def text_bank(params, rows: int, hidden: int) -> dict[str, torch.Tensor]:
    """Per dataset row: frozen text features or token ids (as the text sources give them)."""
    generator = torch.Generator().manual_seed(1)
    phrases = params.data.num_phrases
    lengths = torch.randint(min(3, phrases), phrases + 1, (rows,), generator=generator)
    mask = torch.arange(phrases)[None] < lengths[:, None]
    if not params.text.finetune:
        return {
            "sentence_hidden": torch.randn(rows, hidden, generator=generator),
            "phrase_hidden": torch.randn(rows, phrases, hidden, generator=generator),
            "phrase_mask": mask,
        }
    caption, phrase = params.data.caption_max_tokens, params.data.phrase_max_tokens
    return {
        "caption_ids": torch.randint(1000, 30_000, (rows, caption), generator=generator),
        "caption_mask": torch.ones(rows, caption, dtype=torch.long),
        "phrase_ids": torch.randint(1000, 30_000, (rows, phrases, phrase), generator=generator),
        "phrase_ids_mask": torch.ones(rows, phrases, phrase, dtype=torch.long),
        "phrase_mask": mask,
    }


class Budget:
    def __init__(self, seconds: float) -> None:
        self.start, self.seconds = time.perf_counter(), seconds

    @property
    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def training_part(args, device: torch.device, budget: Budget) -> dict[str, Any]:
    tiny = args.tiny
    bert_config = None
    frozen = load_config(args.preset, False, args.params, args.overrides)
    finetune = load_config(args.preset, True, args.params, args.overrides)
    if tiny:
        from transformers import BertConfig

        bert_config = BertConfig(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            vocab_size=30_522,
        )
        frozen, finetune = (
            params_from_dict(apply_overrides(params_to_dict(p), TINY_OVERRIDES, "tiny"))
            for p in (frozen, finetune)
        )
    batch = args.batch or (4 if tiny else frozen.train.batch_size)
    steps, warmup = (1, 1) if tiny else (args.steps, 3)
    workers = 2 if tiny else args.workers
    trials: list[dict[str, Any]] = []

    def trial(
        name: str, params, options: dict[str, Any], size: int, estimate_s: float, **extra
    ) -> dict | None:
        row: dict[str, Any] = {"trial": name, "batch": size, **{k: options[k] for k in OPTIONS}}
        if budget.left < estimate_s:
            row["status"] = f"skipped: {budget.left:.0f}s left of the budget"
            trials.append(row)
            return None
        try:
            row.update(measure_training(params, size, options, device, steps, warmup, bert_config))
            row["status"] = "ok"
        except Exception as err:  # a failing option (e.g. compile) is reported, and the check goes on
            row["status"] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
            log.warning("%s failed:\n%s", name, traceback.format_exc())
        trials.append(row)
        log.info("%s: %s", name, {k: v for k, v in row.items() if k in ("pairs_per_s", "status")})
        return row if row["status"] == "ok" else None

    best_options = {
        "bf16": False,
        "workers": 0,
        "channels_last": False,
        "fused_adamw": False,
        "compile": False,
    }
    best = trial("baseline (fp32, no workers)", frozen, best_options, batch, 30)
    candidates = [
        ("bf16", True),
        ("workers", workers),
        ("channels_last", True),
        ("fused_adamw", True),
        ("compile", not tiny or args.compile),
    ]
    for option, value in candidates:
        if not value:
            continue
        options = {**best_options, option: value}
        row = trial(f"+ {option}", frozen, options, batch, 150 if option == "compile" else 30)
        if row and (best is None or row["pairs_per_s"] >= 1.02 * best["pairs_per_s"]):
            best, best_options = row, options
            row["kept"] = True
        elif row:
            row["kept"] = False
    finetuned = trial("fine-tuned text, best options", finetune, best_options, batch, 90)
    large = trial("best options, batch 64", frozen, best_options, 8 if tiny else 64, 60)
    projections = []
    for label, row in (
        ("frozen text", best),
        ("fine-tuned text", finetuned),
        ("frozen text, batch 64", large),
    ):
        if row:
            epoch = CUHK_TRAIN_PAIRS / row["pairs_per_s"]
            projections.append(
                {
                    "setting": label,
                    "batch": row["batch"],
                    "pairs/s": row["pairs_per_s"],
                    "epoch min": epoch / 60,
                    f"{frozen.train.epochs} epochs h": frozen.train.epochs * epoch / 3600,
                }
            )
    return {"trials": trials, "best_options": best_options, "projections": projections}


def score_implementation(implementation: str, dim: int, inputs: dict[str, Any], device: torch.device):
    """Exact scores, re-rank scores at inputs["candidates"] and timings of one cross-attention version."""
    module = tied_cross_attention(dim, implementation=implementation).to(device)
    row: dict[str, Any] = {"implementation": implementation}
    images, row["project_images_s"] = timed(lambda: module.project_images(inputs["image_tokens"]), device)
    phrases, row["project_phrases_s"] = timed(
        lambda: module.project_phrases(inputs["phrase_tokens"], inputs["mask"]), device
    )
    module.score_pairwise(images[:8], phrases[:8])  # warm-up (kernels, allocator)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    exact, row["exact_s"] = timed(lambda: module.score_pairwise(images, phrases), device)
    local, row["rerank_s"] = timed(
        lambda: module.score_candidates(images, phrases, inputs["candidates"]), device
    )
    if device.type == "cuda":
        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return row, exact, local


def evaluation_part(args, device: torch.device, budget: Budget) -> dict[str, Any]:
    """Exact and top-k local scores at CUHK size, for each cross-attention version in --implementations."""
    if args.tiny:
        sizes = {"num_images": 32, "num_captions": 64, "num_ids": 12, "dim": 32}
        k = 8
    else:
        sizes = {
            "num_images": CUHK_TEST["images"],
            "num_captions": CUHK_TEST["captions"],
            "num_ids": CUHK_TEST["ids"],
            "dim": 768,
        }
        k = 128
    if budget.left < 30:
        return {"status": f"skipped: {budget.left:.0f}s left of the budget"}
    problem = make_problem(**sizes)
    dim, pairs = sizes["dim"], problem.caption_ids.numel()
    tokens, phrases = problem.image_tokens.shape[1], problem.phrase_tokens.shape[1]
    exact_tflop = 4.0 * pairs * problem.image_ids.numel() * tokens * phrases * dim / 1e12
    rerank_tflop = 4.0 * pairs * k * tokens * phrases * dim / 1e12
    rate = matmul_rate(1024 if args.tiny else 8192, 3, str(device)) / 1e12
    out: dict[str, Any] = {"sizes": problem.sizes, "k": k, "matmul_tflop_per_s": rate, "rows": []}
    out["exact_tflop"], out["rerank_tflop"] = exact_tflop, rerank_tflop
    with torch.no_grad():
        text_global = F.normalize(problem.text_global.to(device), dim=-1)
        image_global = F.normalize(problem.image_global.to(device), dim=-1)
        global_sim = text_global @ image_global.T
        inputs = {
            "image_tokens": problem.image_tokens.to(device),
            "phrase_tokens": problem.phrase_tokens.to(device),
            "mask": problem.phrase_mask.to(device),
            "candidates": global_sim.topk(k, dim=1).indices,
        }
        query_ids, gallery_ids = problem.caption_ids.to(device), problem.image_ids.to(device)
        reference = None  # the current implementation's exact scores
        for implementation in args.implementations:
            if budget.left < 20:
                out["rows"].append({"implementation": implementation, "status": "skipped: budget"})
                continue
            row, exact, local = score_implementation(implementation, dim, inputs, device)
            candidates = inputs["candidates"]
            row["max_abs_diff_rerank_vs_exact"] = float((local - exact.gather(1, candidates)).abs().max())
            reference = exact if reference is None else reference
            row["max_abs_diff_exact_vs_current"] = float((exact - reference).abs().max())
            fused_exact = Scores(global_sim, exact, None).fused(0.5)
            fused_topk = Scores(global_sim, local, candidates).fused(0.5)
            exact_metrics = rank_metrics(fused_exact, query_ids, gallery_ids)
            topk_metrics = rank_metrics(fused_topk, query_ids, gallery_ids)
            row["exact_R1_5_10"] = [round(exact_metrics[key], 3) for key in ("R1", "R5", "R10")]
            row["topk_R1_5_10"] = [round(topk_metrics[key], 3) for key in ("R1", "R5", "R10")]
            row["R_agree"] = row["exact_R1_5_10"] == row["topk_R1_5_10"]
            row["exact_x_limit"] = row["exact_s"] * rate / exact_tflop
            row["rerank_x_limit"] = row["rerank_s"] * rate / rerank_tflop
            row["status"] = "ok"
            out["rows"].append(row)
    out["status"] = "ok"
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny sizes on the CPU (or GPU): a smoke run")
    p.add_argument("--preset", choices=PRESETS, default="paper", help="params.yaml preset (default: paper)")
    p.add_argument("--implementations", nargs="+", default=["current"], help=IMPLEMENTATION_HELP)
    p.add_argument("--budget-s", type=float, default=420.0, help="stop starting new parts after this")
    p.add_argument("--batch", type=int, default=None, help="training batch (default: the paper's, 16)")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per trial")
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers tried")
    p.add_argument("--compile", action="store_true", help="with --tiny: try torch.compile too")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/gpu_check.json")
    add_params_options(p, configuration=False)  # applied on top of the preset
    return p


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.tiny:
        raise SystemExit("gpu_check needs a CUDA GPU; use --tiny for a CPU smoke run")
    budget = Budget(args.budget_s)
    threads = torch.get_num_threads()
    if args.tiny and device.type == "cpu":
        torch.set_num_threads(1)  # tiny ops: one thread avoids waiting on a busy second core
    summary: dict[str, Any] = {
        "benchmark": "gpu_check",
        "command": "PYTHONPATH=. python benchmarks/gpu_check.py"
        + (" --tiny" if args.tiny else "")
        + (f" --preset {args.preset}" if args.preset != "paper" else ""),
        "preset": args.preset,
        "machine": machine_info(),
        "versions": versions(),
    }
    try:
        with contextlib.suppress(KeyboardInterrupt):
            summary["training"] = training_part(args, device, budget)
            summary["evaluation"] = evaluation_part(args, device, budget)
    finally:
        torch.set_num_threads(threads)
    summary["seconds"] = time.perf_counter() - budget.start
    report(summary)
    out = args.out or (RESULTS / ("gpu_check_tiny.json" if args.tiny else "gpu_check.json"))
    print(f"written {write_json(out, summary)} after {summary['seconds']:.0f}s")
    return summary


def versions() -> dict[str, str]:
    import timm
    import transformers

    out = {"torch": torch.__version__, "timm": timm.__version__, "transformers": transformers.__version__}
    if torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
        out["gpu"] = torch.cuda.get_device_name()
    return out


def report(summary: dict[str, Any]) -> None:
    training = summary.get("training", {})
    if training.get("trials"):
        columns = [
            "trial",
            "batch",
            *OPTIONS,
            "pairs_per_s",
            "step_s",
            "warmup_s",
            "peak_gpu_mb",
            "kept",
            "status",
        ]
        print(format_table(training["trials"], columns))
    if training.get("projections"):
        print(format_table(training["projections"], list(training["projections"][0])))
    evaluation = summary.get("evaluation") or {}
    if evaluation.get("rows"):
        print(format_table(evaluation["rows"], list(evaluation["rows"][0])))


if __name__ == "__main__":
    main()
