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
# # ACSA study: ablations and findings
#
# The configurations of `params.yaml`'s `study` section, each trained with every seed and evaluated once on
# the sealed test split. Test metrics are percentages (text-to-image retrieval: R@K, mAP, mINP). Every
# number below comes from a pipeline stage (evaluate, findings, reference_points) and every sentence is
# computed from those numbers (`acsa.reports`).

# %%
import pandas as pd
from IPython.display import Markdown, display

from acsa import paths
from acsa.reports import sentences, study_figures, tables
from acsa.reports.figures import setup, show
from acsa.reports.study_files import load_study_data

# %% tags=["parameters"]
params_file = str(paths.PARAMS)  # its `study` section: configurations, seeds, findings
findings_file = str(paths.FINDINGS)  # findings stage: a - b, interval, verdict per finding
summary_file = str(paths.STUDY_SUMMARY)  # findings stage: mean, std and runs per configuration; plateaus
eval_main = str(paths.EVAL)  # the main model's evaluation (study.main with train.seed)
study_eval = str(paths.STUDY_EVAL)  # <study_eval>/<configuration>/seed-<s>: every other run's evaluation
live_dir = str(paths.LIVE_ROOT)  # DVCLive curves: <live_dir>/main, <live_dir>/study/<configuration>/seed-<s>
reference_file = str(paths.REFERENCE_POINTS / "metrics.json")  # reference_points stage (optional)
configurations = None  # names to show, e.g. [full, global_only]; None: every configuration of the study
metric = None  # the metric of the figures and the placement sentences; None: study.metric

# %%
setup()
pd.set_option("display.max_colwidth", 120)
data = load_study_data(
    params_file,
    findings_file,
    summary_file,
    eval_main,
    study_eval,
    live_dir,
    reference_file,
    configurations,
    metric,
)
values = tables.run_values(data)


def show_table(table: pd.DataFrame, absent: str, left: tuple[str, ...] = ()) -> None:
    display(tables.aligned(table, left) if not table.empty else Markdown(absent))


if data.missing:
    display(Markdown(sentences.missing(data)))

# %% [markdown]
# ## 1. What was compared

# %%
display(Markdown(sentences.method(data)))
display(tables.aligned(tables.configurations_table(data), ("overrides", "findings")))
display(Markdown(sentences.optional(data)))

# %% [markdown]
# ## 2. Results
#
# Each configuration's final score on the test split: mean ± standard deviation over its seeds.
# Bars: the mean; dots: every run.

# %%
show_table(tables.results_table(data), "No results: the findings stage's summary is missing.")
if not values.empty:
    show(study_figures.run_bars(values))

# %% [markdown]
# ## 3. Findings

# %%
display(Markdown(sentences.findings_overview(data)))
show_table(tables.findings_table(data), "", left=("a vs b", "verdict"))
display(Markdown("\n\n".join(sentences.finding(r, data.study.main) for r in (data.findings or {}).values())))

# %% [markdown]
# ## 4. Reference points beside the models
#
# Rankers computed from the benchmark's own attribute records, scored on the same test queries with the same
# metrics, read beside the trained configurations (their mean final score).

# %%
display(Markdown(sentences.reference_placement(data)))
if data.reference is not None:
    display(tables.aligned(tables.reference_table(data, data.reference), ("kind", "what it uses")))
    rankers = tables.ladder(data, data.reference, data.metric)
    show(study_figures.reference_ladder(values, rankers[rankers["kind"] == "reference"], data.metric))

# %% [markdown]
# ## 5. The global branch
#
# The global score compares one image vector with one caption vector; the local score matches the caption's
# noun phrases with image parts. Below: each configuration's global, local and fused scores (mean ± std over
# seeds), what the frozen text features alone can tell, and whether a global text side that also sees the
# phrases closes the gap.

# %%
display(Markdown(sentences.score_kinds(data)))
show_table(tables.score_kinds_table(data, data.metric), "")
if not values.empty:
    show(study_figures.score_kinds(values, data.metric))
display(Markdown(sentences.text_features(data)))
if data.reference is not None and data.reference.text_features:
    display(tables.text_features_table(data.reference.text_features))
display(Markdown(sentences.fair_text_side(data)))

# %% [markdown]
# ## 6. Convergence
#
# Validation R@1 of each run's final score after every epoch (the curve that picks the kept epoch, circled).

# %%
display(Markdown(sentences.plateau(data)))
show(study_figures.convergence(data.curves, tables.kept_epochs(data)))
show_table(tables.plateau_table(data), "")

# %% [markdown]
# ## 7. Fusion weight on validation
#
# The fused score is global + w · local; training picks w with the best validation R@1 (circled) at the kept
# epoch. The test split plays no part in it.

# %%
display(Markdown(sentences.fusion_weights(data)))
show(study_figures.fusion_curves(tables.fusion_curve_table(data), "R1"))

# %% [markdown]
# ## 8. Every run
#
# Each run's test metrics per score kind (global / local / fused; the global score alone for a model without
# the local branch), the fusion weight and the epoch that validation chose.

# %%
show_table(tables.runs_table(data), "No run has been evaluated yet.")
