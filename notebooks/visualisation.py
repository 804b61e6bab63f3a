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
# # What the main ACSA model looks at
#
# Test queries of the main model (full ACSA): the caption and its noun phrases, the top-10 gallery images
# (green: the described person, red: someone else), and the asymmetric cross-attention — each image token
# (the mean token, four body-region stripes, two window cells) attends over the caption's phrases; the maps
# below show, per phrase, the weight a[token, phrase] of every token, drawn over the part of the image the
# token pools. Then a few queries in a user's own words, run through the search tool; a t-SNE map of image and
# caption features; and, on the synthetic benchmark, which attributes the model gets wrong. The numbers come
# from the `explain` stage (`acsa/explain.py`).

# %%
from IPython.display import HTML, Markdown, display

from acsa import paths
from acsa.reports import figures, search_views, views

# %% tags=["parameters"]
explain_dir = str(paths.EXPLAIN)  # the explain stage's output
prepared_dir = str(paths.PREPARED)  # the prepare stage's output (test/records.json: where the images are)
queries = None  # test query indices to show, e.g. [3, 17]; None: successes and failures picked by rank
n_success = 3  # with queries None: successes (top-1 correct), spread over the test set
n_failure = 3  # with queries None: the failures whose first match is ranked lowest

# %%
figures.setup()
explained = views.load_explained(explain_dir, prepared_dir)
cases = views.chosen_cases(explained, queries, n_success, n_failure)

# %% [markdown]
# ## Where the first correct image lands
#
# Share of the test queries by the rank of their first correct image, with the fused score and with the
# global score alone.

# %%
display(views.rank_table(explained.queries))

# %% [markdown]
# ## Successes and failures
#
# For each query: its own image (blue) and the top-10 gallery images. Attention maps: one column per phrase;
# top row, the region tokens as horizontal stripes (head, upper, lower, feet at the encoder's stripe
# fractions); bottom row, the window tokens (cells of the window grid). The number on each stripe or cell
# is a[token, phrase]: the share of that token's attention given to the phrase (each token's weights over the
# phrases sum to 1). For a model scored with the reverse attention (`model.attention: phrase_queries`) it is
# a'[phrase, token] instead: the share of the phrase's attention given to that token (each phrase's weights
# over the tokens sum to 1). For a failure, the maps are drawn on the wrong top-1 image and on the query's own
# image.

# %%
if explained.attention is None:
    display(Markdown("This model has no cross-attention branch (`model.use_local: false`): no maps."))
for query in cases:
    display(Markdown(views.case_markdown(explained, query)))
    figures.show(views.draw_ranking(explained, query))
    for image, maps, label in views.attention_views(explained, query):
        figures.show(views.draw_attention(explained, query, image, maps, label))

# %% [markdown]
# ## Your own words
#
# Queries written as a user would type them (`params.yaml`, `explain.free_queries`), searched by the explain
# stage through the search tool's Python API (`acsa.search.api`, what `acsa search` and `acsa serve` run) in
# an index of the test gallery made with the main model. For each query: the noun phrases the tool extracted
# from it, the top images with their global, local and fused scores, and, per phrase, the attention
# a[token, phrase] of each image token over the query's phrases, drawn as above (left of each pair the
# region stripes, right the window cells; the pooled token's weight under the stripes). No caption of the
# test split is involved: whether a result is the described person is for the reader to judge.

# %%
free = explained.free_queries
if free is None:
    display(Markdown("No `free_queries.json` in the explain stage's output: rerun it (`dvc repro explain`)."))
elif not free["queries"]:
    display(Markdown("No free-text queries in `params.yaml` (`explain.free_queries`)."))
else:
    display(HTML(search_views.setup_html(free)))
    for number, record in enumerate(free["queries"]):
        display(HTML(search_views.query_html(record, number)))
        maps = None if explained.free_attention is None else explained.free_attention[number]
        figures.show(search_views.draw_results(explained, record, maps))

# %% [markdown]
# ## Image and caption features (t-SNE)
#
# Global features of the test images (circles) and captions (crosses) of a subset of identities, one colour
# per identity. Tight same-colour clusters mixing circles and crosses mean that the two modalities agree.

# %%
figures.show(views.draw_embedding(explained.embedding))

# %% [markdown]
# ## Attributes: hit rates and confusions
#
# On the synthetic benchmark every caption's stated attributes are known. Left: R@1 of the queries whose
# caption states the attribute. Right: among the R@1 misses whose caption states it, how often the wrong
# top-1 image's identity has a different value — a high bar means the model ranks first people who
# contradict that part of the caption.

# %%
errors = explained.attribute_errors
if errors is None:
    display(Markdown("No attribute annotations for this benchmark (synthetic benchmark only)."))
else:
    display(Markdown(views.attribute_findings(errors)))
    figures.show(views.draw_attribute_hits(errors))
    display(views.attribute_table(errors))
