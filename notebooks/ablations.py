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
# # ACSA study: the paper's claims, tested
#
# The configurations of `params.yaml`'s `study` section, each trained with every seed and evaluated once on
# the sealed test split. Test metrics are percentages (text-to-image retrieval: R@K, mAP, mINP). Every
# number below comes from a committed file of the pipeline (findings, study summary, the study's runs,
# probes, convergence runs, reference points; the sweep and the end-to-end confirmation when they were run)
# and every sentence is computed from those numbers (`acsa.reports`).

# %%
import pandas as pd
from IPython.display import Markdown, display

from acsa import paths
from acsa.analysis.study_runs import RUNS_FILE
from acsa.reports import claims, diagnostics, sentences, study_figures, tables, training_checks
from acsa.reports.figures import setup, show
from acsa.reports.study_files import load_study_data

# %% tags=["parameters"]
params_file = str(paths.PARAMS)  # `study` (configurations, seeds, findings, claims) and the protocol
findings_file = str(paths.FINDINGS)  # findings stage: per finding and query subset, intervals and verdict
summary_file = str(paths.STUDY_SUMMARY)  # findings stage: per configuration mean ± sd; convergence check
runs_file = str(paths.STUDY_EVAL / RUNS_FILE)  # evaluate_study stage: every run's record
probes_file = str(paths.PROBES)  # probe stage: linear attribute probes
convergence_file = str(paths.CONVERGENCE)  # convergence stage: the longer-budget runs
reference_file = str(paths.REFERENCE_POINTS / "metrics.json")  # reference_points stage
subsets_file = str(paths.QUERY_SUBSETS)  # reference_points stage: which test queries need fine evidence
sweep_file = str(paths.SWEEP_RECORD)  # optional pipeline: the learning-rate sweep
end_to_end_file = str(paths.END_TO_END / "findings.json")  # optional: end to end
configurations = None  # names to show, e.g. [full, global_only]; None: every configuration of the study
metric = None  # the metric of the figures and placements; None: study.metric (the findings use study.metric)

# %%
setup()
pd.set_option("display.max_colwidth", 120)
data = load_study_data(
    params_file,
    findings_file,
    summary_file,
    runs_file,
    probes_file,
    convergence_file,
    reference_file,
    subsets_file,
    sweep_file,
    end_to_end_file,
    configurations,
    metric,
)
values = tables.run_values(data)


def show_table(table: pd.DataFrame, absent: str = "", left: tuple[str, ...] = ()) -> None:
    display(tables.aligned(table, left) if not table.empty else Markdown(absent))


if data.missing:
    display(Markdown(sentences.missing(data)))

# %% [markdown]
# ## 1. What produced the findings

# %%
for paragraph in (sentences.protocol, sentences.seeds_and_runs, sentences.intervals, sentences.query_subsets):
    display(Markdown(paragraph(data)))

# %% [markdown]
# ## 2. The paper's claims
#
# Each claim against the controls that isolate it (a − b, a the main configuration): on all test queries and
# on those that need fine evidence, the raw interval and the Holm-adjusted one the verdict reads.

# %%
show_table(claims.claims_table(data), "No findings to show: the findings stage has not run.", ("verdict",))
display(Markdown(claims.claims_said(data)))

# %% [markdown]
# ## 3. Configurations
#
# What each configuration changes, the learning rate and budget it trains with (params.yaml after its
# overrides), what it trains, and its final score on the test split: mean ± standard deviation over seeds.
# Bars: the mean; dots: every run.

# %%
show_table(tables.configurations_table(data), left=("overrides", "second score", "findings"))
display(Markdown(sentences.capacity(data)))
display(Markdown(sentences.optional(data)))
show_table(tables.results_table(data), "No results: the findings stage's summary is missing.")
if not values.empty:
    show(study_figures.run_bars(values))

# %% [markdown]
# ## 4. The second score
#
# Full ACSA ranks by global + w · local. Below: its local score alone beside the global-only control, each
# configuration's global, second and fused scores (mean ± sd over seeds; the fusion control's second score
# is a second global branch), and what the frozen text features alone can tell.

# %%
display(Markdown(sentences.local_alone(data)))
display(Markdown(sentences.score_kinds(data)))
show_table(tables.score_kinds_table(data, data.metric), left=("second score",))
if not values.empty:
    show(study_figures.score_kinds(values, data.metric))
display(Markdown(diagnostics.text_features(data)))
if data.reference is not None and data.reference.text_features:
    show_table(tables.text_features_table(data.reference.text_features), left=("caption as",))

# %% [markdown]
# ## 5. Fine evidence
#
# Each configuration on all test queries and on those that need fine evidence (section 1), as the findings
# hold them.

# %%
display(Markdown(diagnostics.fine_evidence(data)))
show_table(diagnostics.subset_table(data))
if diagnostics.final_subset_means(data):
    show(study_figures.subset_dots(diagnostics.subset_means(data), data.study.metric))

# %% [markdown]
# ## 6. The encoder or the alignment?
#
# Linear probes read attributes off image features: the frozen backbone's (what every configuration starts
# from) and each configuration's global embedding and image tokens. Accuracy on validation images (%) beside
# each attribute's majority share (a configuration's cells: global / tokens); the heat map shows accuracy
# minus that share.

# %%
display(Markdown(diagnostics.probe_reading(data)))
show_table(diagnostics.probe_table(data))
if data.probes is not None:
    show(study_figures.probe_margins(diagnostics.probe_margins(data)))

# %% [markdown]
# ## 7. Convergence
#
# Validation R@1 of each run's final score after every epoch (the kept epoch circled), with the longer-budget
# runs of the convergence check dashed.

# %%
display(Markdown(training_checks.convergence(data)))
show_table(training_checks.convergence_table(data))
show(study_figures.validation_curves(tables.validation_curves(data)))
display(Markdown(training_checks.plateau(data)))
show_table(tables.plateau_table(data))

# %% [markdown]
# ## 8. The learning-rate sweep
#
# Best validation R@1 of each configuration at each learning rate of the grid (one seed), beside the rate
# params.yaml trains it with.

# %%
display(Markdown(training_checks.sweep(data)))
show_table(training_checks.sweep_table(data))
if training_checks.grid_results(data):
    chosen = {name: data.settings[name].train.lr for name in data.shown}
    show(study_figures.sweep_lines(training_checks.grid_results(data), chosen))

# %% [markdown]
# ## 9. The end-to-end confirmation
#
# The key configurations trained with the previous protocol (the backbone trained too): do the two protocols
# rank the configurations and judge the findings alike?

# %%
display(Markdown(training_checks.end_to_end(data)))
show_table(training_checks.agreement_table(data))
show_table(training_checks.ranking_table(data))

# %% [markdown]
# ## 10. Reference rankers, fusion weights and every run
#
# ### Reference rankers beside the models
#
# Rankers computed from the benchmark's own attribute records, scored on the same test queries with the same
# metrics, read beside the trained configurations (their mean final score).

# %%
display(Markdown(sentences.reference_placement(data)))
if data.reference is not None:
    show_table(tables.reference_table(data, data.reference), left=("kind", "what it uses"))
    rankers = tables.ladder(data, data.reference, data.metric)
    show(study_figures.reference_ladder(values, rankers[rankers["kind"] == "reference"], data.metric))

# %% [markdown]
# ### Fusion weight on validation
#
# The fused score is global + w · second score; training picks w with the best validation R@1 (circled) at
# the kept epoch. The test split plays no part in it.

# %%
display(Markdown(sentences.fusion_weights(data)))
show(study_figures.fusion_curves(tables.fusion_curve_table(data), "R1"))

# %% [markdown]
# ### Every run
#
# Each run's test metrics per score kind (global / second / fused; the global score alone for a model
# without a second score), the fusion weight and the epoch that validation chose, and its thread count.

# %%
show_table(tables.runs_table(data), "No run has been evaluated yet.")
