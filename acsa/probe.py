"""Stage `probe`: linear attribute probes on image features -> what the image encoder makes available and what
each configuration's heads keep (acsa/analysis/probes.py).

Inputs:  params.yaml (study, and the sections of each configuration), the main-seed run of every study
         configuration (MAIN_MODEL for the main configuration, MODELS/<configuration>/seed-<train.seed>),
         IMAGE_FEATURES/train and val (the frozen backbone's cached outputs, view 0), PREPARED's train and
         val records and the synthetic benchmark's attributes.json. Never the test split.
Outputs: OUT (default reports/probes.json, committed with the study): per representation, per attribute,
         the validation accuracy of a logistic regression fitted on the training images and the share of
         the most frequent value. Representations: `backbone` (the frozen backbone's pooled map, body bands
         and window cells, what every configuration starts from) and, per configuration, `global` (its
         global image embedding) and `tokens` (its image tokens, concatenated).
         On a public benchmark (no attribute records), or with image.frozen: false: {"available": false}.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from acsa import paths
from acsa.analysis.probes import COARSE_PROBES, FINE_PROBES, probe_representation
from acsa.cli import add_path, run_stage, stage_parser
from acsa.config.loading import load_params
from acsa.config.study import load_study
from acsa.data.prepared import cached_images, load_prepared
from acsa.model.acsa import ACSA
from acsa.runtime import set_threads
from acsa.scoring.retrieval import encode_images
from acsa.storage.files import read_json, write_json

log = logging.getLogger(__name__)
SPLITS = ("train", "val")


def backbone_matrix(images) -> np.ndarray:
    """The frozen backbone's outputs of every image (view 0), flattened: [N, C + K*C + G*C']."""
    rows = images.rows(torch.arange(len(images)))
    return torch.cat([rows[name].flatten(1) for name in ("pooled", "bands", "windows")], dim=1).numpy()


def probes(
    params_file: Path, prepared_dir: Path, image_features: Path, main_model: Path, models: Path
) -> dict:
    params = load_params(params_file)
    prepared = load_prepared(prepared_dir)
    if prepared.dataset("train") != "synthetic" or not params.image.frozen:
        why = "attribute records (synthetic benchmark) and a frozen backbone's cached outputs are needed"
        return {"available": False, "reason": why}
    set_threads(params.train.threads)
    attributes = read_json(prepared.attributes_file("train"))
    image_paths = {
        name: prepared.split(name)["images" if name == "train" else "image_paths"] for name in SPLITS
    }
    cached = {name: cached_images(prepared, image_features, name, params.image) for name in SPLITS}

    def probed(x: dict[str, np.ndarray]) -> dict:
        return probe_representation(
            x["train"], x["val"], image_paths["train"], image_paths["val"], attributes
        )

    out = {
        "available": True,
        "fit_split": "train",
        "score_split": "val",
        "attributes": {"coarse": list(COARSE_PROBES), "fine": list(FINE_PROBES)},
        "backbone": probed({name: backbone_matrix(cached[name]) for name in SPLITS}),
        "configurations": {},
    }
    study = load_study(params_file)
    seed = params.train.seed
    for name in study.configurations:
        folder = study.run_folder(name, seed, seed, main_model, models)
        model = ACSA.from_checkpoint(folder, load_params(params_file, configuration=name))
        features = {name: encode_images(model, cached[name], 256, torch.device("cpu")) for name in SPLITS}
        out["configurations"][name] = {
            "seed": seed,
            "global": probed({k: f.global_feat.numpy() for k, f in features.items()}),
            "tokens": probed({k: f.tokens.flatten(1).numpy() for k, f in features.items()}),
        }
        log.info("probed %s seed %d", name, seed)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(__doc__, params=False)
    add_path(parser, "--params", paths.PARAMS, "params file")
    add_path(parser, "--prepared", paths.PREPARED, "the prepare stage's output (train and val)")
    add_path(parser, "--image-features", paths.IMAGE_FEATURES, "the embed_images stage's output")
    add_path(parser, "--main-model", paths.MODEL, "the main model (the main configuration's main-seed run)")
    add_path(parser, "--models", paths.STUDY_MODELS, "the study's models (<configuration>/seed-<s>)")
    add_path(parser, "--out", paths.PROBES, "output file")
    args = parser.parse_args(argv)
    result = probes(args.params, args.prepared, args.image_features, args.main_model, args.models)
    write_json(args.out, result)
    log.info("probes -> %s", args.out)


if __name__ == "__main__":
    run_stage(main)
