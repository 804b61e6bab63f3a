"""The frozen BERT text encoder run by ONNX Runtime, for the search's queries: about twice as fast as eager
PyTorch on a CPU for a query's short packed sequence (benchmarks/search_speed.py), with the same hidden
states up to float rounding (tests/test_search_speed.py holds them within 1e-5).

No export step and no file: the graph is built, when first needed, from the encoder's own weights, as
transformers' BertModel computes its last hidden state in eval mode (dropout off):

    x = LayerNorm(word[ids] + token_type[0] + position[positions])
    per layer: q, k, v = x Wq + bq, x Wk + bk, x Wv + bv (one product of the three weights side by side)
               a = softmax(q k^T / sqrt(head size) + mask) per head;  x = LayerNorm(x + (a v) Wo + bo)
               x = LayerNorm(x + gelu(x W1 + b1) W2 + b2)            gelu with erf, as BERT's "gelu"

for one packed sequence (acsa.search.packed_text: `mask` keeps each text to itself). Used when onnxruntime
and onnx are installed and the encoder is such a BERT (absolute positions, "gelu"); otherwise the PyTorch
forward runs. ONNX Runtime picks its kernels by what the processor has (AVX2, AVX-512) and takes as many
threads as torch; it spins waiting for work unless OMP_WAIT_POLICY is PASSIVE (shared cores).
"""

from __future__ import annotations

import importlib.util
import math
import os
from typing import Any

import numpy as np
import torch

OPSET = 17  # LayerNormalization


def installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def supported(bert: torch.nn.Module) -> bool:
    """Whether `bert` is a model this graph computes exactly (module docstring)."""
    config = getattr(bert, "config", None)
    return (
        getattr(config, "model_type", None) == "bert"
        and getattr(config, "hidden_act", None) == "gelu"
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and not getattr(config, "is_decoder", False)
    )


class _Graph:
    """Nodes and initializers of an ONNX graph, named in order."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, value: np.ndarray | torch.Tensor) -> str:
        array = value.detach().float().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        name = f"c{len(self.initializers)}"
        self.initializers.append(self.numpy_helper.from_array(array.copy(order="C"), name))  # 0-d stays 0-d
        return name

    def op(self, kind: str, *inputs: str, **attributes: Any) -> str:
        self._count += 1
        name = f"t{self._count}"
        self.nodes.append(self.helper.make_node(kind, list(inputs), [name], **attributes))
        return name

    def linear(self, x: str, layer: torch.nn.Linear) -> str:
        return self.op("Add", self.op("MatMul", x, self.const(layer.weight.T)), self.const(layer.bias))

    def layer_norm(self, x: str, norm: torch.nn.LayerNorm) -> str:
        weight, bias = self.const(norm.weight), self.const(norm.bias)
        return self.op("LayerNormalization", x, weight, bias, axis=-1, epsilon=float(norm.eps))


def _attention(g: _Graph, x: str, layer: Any, heads: int, mask: str) -> str:
    """Self-attention of `x` [T, H] over the texts `mask` allows; returns the layer's output [T, H]."""
    self_attention = layer.attention.self
    hidden = self_attention.query.weight.shape[0]
    size = hidden // heads
    weight = torch.cat([self_attention.query.weight, self_attention.key.weight, self_attention.value.weight])
    bias = torch.cat([self_attention.query.bias, self_attention.key.bias, self_attention.value.bias])
    qkv = g.op("Add", g.op("MatMul", x, g.const(weight.T)), g.const(bias))  # [T, 3H]
    qkv = g.op("Reshape", qkv, g.const(np.array([-1, 3, heads, size], dtype=np.int64)))
    qkv = g.op("Transpose", qkv, perm=[1, 2, 0, 3])  # [3, heads, T, size]
    q, k, v = (g.op("Gather", qkv, g.const(np.array(i, dtype=np.int64)), axis=0) for i in range(3))
    scores = g.op("MatMul", q, g.op("Transpose", k, perm=[0, 2, 1]))  # [heads, T, T]
    scores = g.op("Add", g.op("Mul", scores, g.const(np.array(size**-0.5, dtype=np.float32))), mask)
    context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)  # [heads, T, size]
    context = g.op("Reshape", g.op("Transpose", context, perm=[1, 0, 2]), g.const(np.array([-1, hidden])))
    out = layer.attention.output
    return g.layer_norm(g.op("Add", g.linear(context, out.dense), x), out.LayerNorm)


def _feed_forward(g: _Graph, x: str, layer: Any) -> str:
    h = g.linear(x, layer.intermediate.dense)
    root_half = g.const(np.array(1 / math.sqrt(2), dtype=np.float32))
    one, half = g.const(np.array(1.0, dtype=np.float32)), g.const(np.array(0.5, dtype=np.float32))
    erf = g.op("Erf", g.op("Mul", h, root_half))
    gelu = g.op("Mul", g.op("Mul", h, half), g.op("Add", erf, one))  # x/2 (1 + erf(x / sqrt 2))
    return g.layer_norm(g.op("Add", g.linear(gelu, layer.output.dense), x), layer.output.LayerNorm)


def build(bert: torch.nn.Module) -> bytes:
    """The serialised ONNX model: inputs ids [T], positions [T] (int64), mask [T, T] (additive float32);
    output states [T, H], the last hidden state."""
    from onnx import TensorProto, helper

    g = _Graph()
    embeddings = bert.embeddings
    word = g.op("Gather", g.const(embeddings.word_embeddings.weight), "ids", axis=0)
    position = g.op("Gather", g.const(embeddings.position_embeddings.weight), "positions", axis=0)
    x = g.op("Add", g.op("Add", word, g.const(embeddings.token_type_embeddings.weight[0])), position)
    x = g.layer_norm(x, embeddings.LayerNorm)
    for layer in bert.encoder.layer:
        x = _attention(g, x, layer, bert.config.num_attention_heads, "mask")
        x = _feed_forward(g, x, layer)
    g.nodes.append(helper.make_node("Identity", [x], ["states"]))
    inputs = [
        helper.make_tensor_value_info("ids", TensorProto.INT64, ["T"]),
        helper.make_tensor_value_info("positions", TensorProto.INT64, ["T"]),
        helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["T", "T"]),
    ]
    output = helper.make_tensor_value_info("states", TensorProto.FLOAT, ["T", bert.config.hidden_size])
    graph = helper.make_graph(g.nodes, "bert_packed", inputs, [output], g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return model.SerializeToString()


class OnnxBert:
    """An ONNX Runtime session of `bert`'s encoder (module docstring): `states(ids, positions, mask)`."""

    def __init__(self, bert: torch.nn.Module) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
        options.add_session_config_entry("session.intra_op.allow_spinning", "0" if passive else "1")
        options.log_severity_level = 3  # errors only: no line per optimisation
        self.session = onnxruntime.InferenceSession(build(bert), options, providers=["CPUExecutionProvider"])

    def states(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids, positions [T] (long), mask [T, T] (additive) -> last hidden state [T, H] float32."""
        feeds = {"ids": ids.numpy(), "positions": positions.numpy(), "mask": mask.numpy()}
        return torch.from_numpy(self.session.run(["states"], feeds)[0])
