"""The query's text path (issue 21, item 8): a query and its new noun phrases go through the frozen text
encoder in one forward (acsa.search.packed_text), run by ONNX Runtime where it is installed
(acsa.search.onnx_text), with the features of separate PyTorch forwards up to float rounding (1e-5). Timing
is benchmarks/search_speed.py's business (its query section compares the paths in one process); here: the
count of forwards, and the features."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from acsa.data.tokenize import PAD_PHRASE
from acsa.model.text_encoder import TextEncoder
from acsa.search import onnx_text, packed_text
from acsa.search.api import SearchIndex, build_index
from acsa.search.model_access import SearchModel

QUERIES = [
    "a woman in a red coat carrying a black backpack",
    "The young man wears a white tee with black stripes, blue jeans and brown sneakers; he has short hair.",
    "girl with a yellow umbrella",
    "x" * 900,  # cut at the caption's token limit
]


@pytest.fixture(scope="module")
def model(smoke_run: Path) -> SearchModel:
    return SearchModel(smoke_run / "model")


def separate(encoder: TextEncoder, model: SearchModel, texts: list[str], max_tokens: int) -> torch.Tensor:
    """The states as embed_text computes them: one padded batch through `encoder`."""
    return encoder(*model.text.tokenize(texts, max_tokens)).float()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_packed_states_equal_separate_forwards(model: SearchModel, pooling: str):
    encoder = model.text.encoder
    if pooling != encoder.pooling:
        config = dataclasses.replace(model.params.text, pooling=pooling)
        encoder = TextEncoder(config, model=encoder.model)
    assert packed_text.packable(encoder)
    data = model.params.data
    for query in QUERIES:
        phrases = [*model.phrases(query), PAD_PHRASE]
        ids = model.text._ids([query], data.caption_max_tokens) + model.text._ids(
            phrases, data.phrase_max_tokens
        )
        packed = packed_text.pooled(encoder, ids).float()
        with torch.inference_mode():
            want = torch.cat(
                [
                    separate(encoder, model, [query], data.caption_max_tokens),
                    separate(encoder, model, phrases, data.phrase_max_tokens),
                ]
            )
        torch.testing.assert_close(packed, want, atol=1e-5, rtol=0)


def count_forwards(model: SearchModel, monkeypatch) -> list[int]:
    calls = []
    forward = model.text.encoder.model.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    monkeypatch.setattr(model.text.encoder.model, "forward", counted)
    return calls


def test_a_cold_query_is_one_forward_with_the_features_of_two(model: SearchModel, monkeypatch):
    """Before: a forward for the caption and another for its phrases, on every query with a new phrase."""
    model.warm_up()
    calls = count_forwards(model, monkeypatch)
    try:
        for query in QUERIES[:3]:
            model.text.path = "separate"
            model.text.forget_phrases()
            before = model.encode_query(query)
            assert len(calls) == 2
            model.text.path = "packed"
            model.text.forget_phrases()
            after = model.encode_query(query)
            assert len(calls) == 3  # one forward: the caption and every phrase
            torch.testing.assert_close(after.global_feat, before.global_feat, atol=1e-5, rtol=0)
            torch.testing.assert_close(after.phrase_tokens, before.phrase_tokens, atol=1e-5, rtol=0)
            calls.clear()
        model.encode_query(QUERIES[2])  # warm: its phrases are cached, the caption alone is encoded
        assert len(calls) == 1
    finally:
        model.text.path = "packed"


def test_search_results_are_those_of_the_previous_text_path(smoke_run: Path, tmp_path: Path):
    build_index(smoke_run / "model", tmp_path / "index", prepared=smoke_run / "prepared", progress=False)
    index = SearchIndex.open(tmp_path / "index")
    for query in QUERIES[:3]:
        index.model.text.path = "separate"
        index.model.text.forget_phrases()
        before = {r.key: r for r in index.search(query, top_k=len(index)).results}
        for path in ("packed", "onnxruntime") if onnx_text.installed() else ("packed",):
            index.model.text.path = path
            index.model.text.forget_phrases()
            after = {r.key: r for r in index.search(query, top_k=len(index)).results}
            assert before.keys() == after.keys()
            for key, result in after.items():
                assert result.fused == pytest.approx(before[key].fused, abs=1e-5), path


def test_an_encoder_that_is_not_bert_keeps_separate_forwards(model: SearchModel, monkeypatch):
    encoder = model.text.encoder
    # RoBERTa counts positions from its padding index: its packed positions would differ, so it is not packed
    monkeypatch.setattr(encoder.model.config, "model_type", "roberta")
    assert not packed_text.packable(encoder)
    monkeypatch.setattr(model.text, "_path", None)  # chosen again: only "separate" applies
    assert model.text.path == "separate"
    with pytest.raises(ValueError, match="not one of those that apply"):
        model.text.path = "packed"
    model.text.forget_phrases()
    calls = count_forwards(model, monkeypatch)
    model.encode_query(QUERIES[0])
    assert len(calls) == 2


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_onnx_runtime_states_equal_pytorch(model: SearchModel, pooling: str):
    """The ONNX Runtime graph built from the encoder's weights gives its hidden states within 1e-5: the
    bundled MiniLM, and a BERT of another shape (random weights, 12 heads of 16)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    other = BertModel(
        BertConfig(hidden_size=192, num_hidden_layers=3, num_attention_heads=12, intermediate_size=256)
    )
    data = model.params.data
    for bert in (model.text.encoder.model, other.eval()):
        config = dataclasses.replace(model.params.text, pooling=pooling)
        encoder = TextEncoder(config, model=bert)
        assert onnx_text.supported(bert)
        runtime = onnx_text.OnnxBert(bert)
        for query in QUERIES:
            phrases = [*model.phrases(query), PAD_PHRASE]
            ids = model.text._ids([query], data.caption_max_tokens) + model.text._ids(
                phrases, data.phrase_max_tokens
            )
            want = packed_text.pooled(encoder, ids)
            got = packed_text.pooled(encoder, ids, runtime.states)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_the_default_path_is_onnx_runtime_where_it_is_installed(model: SearchModel):
    model.text._path = None
    assert model.text.path == ("onnxruntime" if onnx_text.installed() else "packed")
    model.text.one_query()  # `acsa search`: one query does not pay for an ONNX Runtime session
    assert model.text.path == "packed"
