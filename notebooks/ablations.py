# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # ACSA ablations
#
# Every variant below is a model that `dvc repro` trained and evaluated exactly like the main one (full ACSA),
# with the overrides declared in `params.yaml` under `ablations`. Test metrics are percentages on the test
# split (text-to-image retrieval: R@K, mAP, mINP). A variant's *final* score is the fused one
# (global + w · local, w chosen on validation) when it has the cross-attention branch, else the global one.
# Variants that differ only in `train.seed` are repeats of one configuration: their mean and half-range
# (max − min) / 2 show the seed spread. All numbers come from the pipeline's stages; the text is computed
# from them (`acsa.reports.tables`).

# %%
import pandas as pd
from IPython.display import Markdown, display

from acsa import paths
from acsa.reports import figures, tables
from acsa.reports.markup import markdown_text

# %% tags=["parameters"]
params_file = str(paths.PARAMS)  # declares the variants (`ablations`); the main model has no overrides
variants = None  # names to show, e.g. ["main", "global_only"]; None: main and every ablation of params_file
eval_dir = str(paths.EVAL_ROOT)  # evaluate stages: <eval_dir>/<variant>/metrics.json and fusion_curve.json
live_dir = str(paths.LIVE_ROOT)  # train stages' DVCLive logs: <live_dir>/<variant>/plots/metrics/**.tsv
metric = "R1"  # the headline metric of the findings and the curves

# %%
figures.setup()
pd.set_option("display.precision", 1)
chosen = tables.declared_variants(params_file, variants)
results, missing = tables.load_results(chosen, eval_dir)
if missing:
    display(
        Markdown(f"**Missing metrics** (not evaluated yet, left out): {markdown_text(', '.join(missing))}")
    )

# %% [markdown]
# ## Results
#
# Final score of each configuration; `±` is the half-range over seeds.

# %%
summary = tables.seed_summary(results)
display(tables.summary_table(summary))

# %% [markdown]
# ## Findings

# %%
display(Markdown("\n\n".join(tables.findings(results, chosen, metric=metric))))

# %% [markdown]
# ## Metrics per variant
#
# Bars: mean over seeds; dots: each seed; whiskers: min to max.

# %%
figures.show(figures.metric_bars(results))

# %% [markdown]
# ## Global, local and fused scores of each model
#
# The local score is the cross-attention score of every (caption, image) pair (`evaluate.local_mode: exact`,
# the default) or of each query's global top-k only (`rerank`, k = `evaluate.rerank_k`); the fused score adds
# it to the global one with the weight chosen on validation.

# %%
figures.show(figures.score_kinds(results, metric))

# %% [markdown]
# ## Fusion weight on the validation split
#
# The evaluate stage picks the weight with the best validation R@1 (circled); the test split is never used.

# %%
colours = figures.variant_colours([v.name for v in chosen])
figures.show(figures.fusion_curves(tables.load_fusion_curves(chosen, eval_dir), metric, colours))

# %% [markdown]
# ## Training curves
#
# Per epoch (DVCLive). The selection R@1 is the validation R@1 of the model's final score, which picks the
# epoch that is kept.

# %%
curves = tables.load_training_curves(chosen, live_dir, ("train/loss", "val/selection_R1", "val/global/R1"))
figures.show(figures.training_curves(curves, colours))

# %% [markdown]
# ## Every run
#
# Each variant's test metrics per score kind (`fusion_weight`: the weight chosen on validation; "-" for a
# model without the local branch).

# %%
runs = results.drop(columns=["group", "final"])
runs["fusion_weight"] = [("-" if pd.isna(w) else f"{w:g}") for w in runs["fusion_weight"]]
display(runs.set_index(["variant", "kind"]))
