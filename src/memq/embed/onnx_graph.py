"""The weight-free ONNX graphs of all-MiniLM-L6-v2 that ship with memq, and the weights they take.

memq's ONNX embedder (:mod:`memq.embed.onnx`) needs no torch and converts nothing at install time:
the encoder's graph is written once, here, with the ``onnx`` package's helper API, and shipped in
``memq/embed/data/`` (about 20 kB each). Its initializers hold no data: they are marked external,
and the embedder hands ONNX Runtime the tensors at session creation
(``SessionOptions.add_external_initializers``), made by :func:`prepare_weights` from the packaged
fp32 ``model.safetensors`` (numpy only; this module imports ``onnx`` only to build graphs).

The graph computes Hugging Face's ``BertModel`` with ONNX Runtime's fused CPU operators:
embeddings (word + token type 0, then + position) -> LayerNorm -> 6 x (Q/K/V projection in one
MatMul, ``MultiHeadAttention`` with the padding mask, output projection, ``SkipLayerNormalization``
(bias + residual + LayerNorm), feed-forward with ``BiasGelu`` (erf GELU), ``SkipLayerNormalization``).
It outputs ``last_hidden_state``; mean pooling and L2 normalisation happen in numpy.

``int8`` differs only in its matrix products: ``MatMulNBits`` with 8-bit weights, symmetric, one
scale per block of 32 input rows of each output column, and ``accuracy_level=4`` (ONNX Runtime
quantises the activations per block too and multiplies in int8). Embeddings, attention and
LayerNorm stay fp32. Per-block scales keep the vectors close to fp32 (cosine >= 0.99 on LoCoMo
turns, where per-tensor activation quantisation, ``DynamicQuantizeMatMul``, fell to 0.95).

Regenerate after changing this file (``tests/test_embed_onnx.py`` checks the shipped files match)::

    python -m memq.embed.onnx_graph
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

HIDDEN = 384
HEADS = 12
LAYERS = 6
INTERMEDIATE = 1536
VOCAB = 30522
MAX_POSITIONS = 512
LAYER_NORM_EPS = 1e-12
OPSET = 17
INT8_BLOCK = 32  # rows of a weight column sharing one int8 scale
INT8_ACCURACY_LEVEL = 4  # MatMulNBits: int8 activations, int8 multiply
VARIANTS = ("fp32", "int8")
DATA_DIR = Path(__file__).with_name("data")
GRAPH_FILES = {"fp32": "minilm-l6-v2.fp32.onnx", "int8": "minilm-l6-v2.int8.onnx"}

# A layer's matrix products: graph name -> (safetensors stems whose [out, in] weights it stacks, in, out)
_PROJECTIONS = {
    "attention.qkv": (
        ("attention.self.query", "attention.self.key", "attention.self.value"),
        HIDDEN,
        3 * HIDDEN,
    ),
    "attention.output.dense": (("attention.output.dense",), HIDDEN, HIDDEN),
    "intermediate.dense": (("intermediate.dense",), HIDDEN, INTERMEDIATE),
    "output.dense": (("output.dense",), INTERMEDIATE, HIDDEN),
}
_NORMS = ("attention.output.LayerNorm", "output.LayerNorm")


def source_tensors() -> Iterator[tuple[str, tuple[int, ...]]]:
    """Every fp32 tensor read from ``model.safetensors``, with its shape ([out, in] for Linear weights)."""
    yield "embeddings.word_embeddings.weight", (VOCAB, HIDDEN)
    yield "embeddings.position_embeddings.weight", (MAX_POSITIONS, HIDDEN)
    yield "embeddings.token_type_embeddings.weight", (2, HIDDEN)
    yield "embeddings.LayerNorm.weight", (HIDDEN,)
    yield "embeddings.LayerNorm.bias", (HIDDEN,)
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for stems, n_in, n_out in _PROJECTIONS.values():
            for stem in stems:
                yield f"{p}{stem}.weight", (n_out // len(stems), n_in)
                yield f"{p}{stem}.bias", (n_out // len(stems),)
        for norm in _NORMS:
            yield f"{p}{norm}.weight", (HIDDEN,)
            yield f"{p}{norm}.bias", (HIDDEN,)


def quantize_blocks(matrix: np.ndarray, block: int = INT8_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """``MatMulNBits`` (8 bits) weights of an ``[in, out]`` matrix: symmetric int8 per block of
    ``block`` input rows of each column, stored offset by 128 as uint8 ``[out, in / block, block]``
    (the operator's default zero point), and the float32 scales ``[out * in / block]``."""
    n_in, n_out = matrix.shape
    if n_in % block:
        raise ValueError(f"{n_in} input rows are not a multiple of the block size {block}")
    blocks = np.asarray(matrix, dtype=np.float32).T.reshape(n_out, n_in // block, block)
    scale = np.abs(blocks).max(axis=2) / 127.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(blocks / scale[..., None]), -127, 127) + 128
    return np.ascontiguousarray(q, dtype=np.uint8), np.ascontiguousarray(scale.reshape(-1), dtype=np.float32)


def prepare_weights(source: Mapping[str, np.ndarray], variant: str) -> dict[str, np.ndarray]:
    """The graph's initializers (name -> array) from the safetensors tensors (arrays are not copied
    where the graph takes them as they are, e.g. the memory-mapped embedding tables)."""
    _check_variant(variant)
    out = {name: source[name] for name in source if name.startswith("embeddings.")}
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        for name, (stems, _, _) in _PROJECTIONS.items():
            matrix = np.ascontiguousarray(np.concatenate([source[f"{p}{s}.weight"] for s in stems]).T)
            out[f"{p}{name}.bias"] = np.concatenate([source[f"{p}{s}.bias"] for s in stems])
            if variant == "int8":
                out[f"{p}{name}.weight_int8"], out[f"{p}{name}.weight_scale"] = quantize_blocks(matrix)
            else:
                out[f"{p}{name}.weight"] = matrix
        for norm in _NORMS:
            out[f"{p}{norm}.weight"] = source[f"{p}{norm}.weight"]
            out[f"{p}{norm}.bias"] = source[f"{p}{norm}.bias"]
    return out


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")


class _Builder:
    """Appends nodes and data-less initializers to a graph."""

    def __init__(self, variant: str) -> None:
        from onnx import TensorProto, helper

        self.helper, self.tp = helper, TensorProto
        self.int8 = variant == "int8"
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, ms: bool = False, **attrs: Any) -> Any:
        outs = [f"{op_type}_{len(self.nodes)}_{k}" for k in range(n_out)]
        domain = "com.microsoft" if ms else ""
        self.nodes.append(self.helper.make_node(op_type, inputs, outs, name=outs[0], domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs

    def const(self, name: str, dtype: int, dims: list[int], values: list[Any]) -> str:
        self.initializers.append(self.helper.make_tensor(name, dtype, dims, values))
        return name

    def external(self, name: str, shape: tuple[int, ...], dtype: int | None = None) -> str:
        """An initializer whose data the embedder supplies at session creation."""
        tensor = self.tp()
        tensor.name = name
        tensor.data_type = self.tp.FLOAT if dtype is None else dtype
        tensor.dims.extend(shape)
        tensor.data_location = self.tp.EXTERNAL
        for key, value in (("location", "supplied-by-memq"), ("offset", "0"), ("length", "0")):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        self.initializers.append(tensor)
        return name

    def matmul(self, x: str, name: str, n_in: int, n_out: int) -> str:
        if self.int8:
            k_blocks = n_in // INT8_BLOCK
            w = self.external(f"{name}.weight_int8", (n_out, k_blocks, INT8_BLOCK), self.tp.UINT8)
            scale = self.external(f"{name}.weight_scale", (n_out * k_blocks,))
            return self.op(
                "MatMulNBits",
                [x, w, scale],
                ms=True,
                K=n_in,
                N=n_out,
                bits=8,
                block_size=INT8_BLOCK,
                accuracy_level=INT8_ACCURACY_LEVEL,
            )
        return self.op("MatMul", [x, self.external(f"{name}.weight", (n_in, n_out))])

    def norm_params(self, name: str) -> list[str]:
        return [self.external(f"{name}.weight", (HIDDEN,)), self.external(f"{name}.bias", (HIDDEN,))]

    def skip_norm(self, x: str, residual: str, bias: str, norm: str) -> str:
        """LayerNorm(x + residual + bias)."""
        gamma, beta = self.norm_params(norm)
        return self.op(
            "SkipLayerNormalization", [x, residual, gamma, beta, bias], ms=True, epsilon=LAYER_NORM_EPS
        )

    def layer(self, x: str, mask: str, i: int) -> str:
        p = f"encoder.layer.{i}."
        sizes = {name: (n_in, n_out) for name, (_, n_in, n_out) in _PROJECTIONS.items()}
        bias = {name: self.external(f"{p}{name}.bias", (n_out,)) for name, (_, n_out) in sizes.items()}
        q, k, v = self.op(
            "Split",
            [self.matmul(x, p + "attention.qkv", *sizes["attention.qkv"]), "qkv_split"],
            n_out=3,
            axis=-1,
        )
        context = self.op(
            "MultiHeadAttention", [q, k, v, bias["attention.qkv"], mask], ms=True, num_heads=HEADS
        )
        attn = self.matmul(context, p + "attention.output.dense", *sizes["attention.output.dense"])
        x = self.skip_norm(attn, x, bias["attention.output.dense"], p + "attention.output.LayerNorm")
        h = self.op(
            "BiasGelu",
            [
                self.matmul(x, p + "intermediate.dense", *sizes["intermediate.dense"]),
                bias["intermediate.dense"],
            ],
            ms=True,
        )
        out = self.matmul(h, p + "output.dense", *sizes["output.dense"])
        return self.skip_norm(out, x, bias["output.dense"], p + "output.LayerNorm")


def build_graph(variant: str) -> Any:
    """The ``onnx.ModelProto`` of one variant, without weight data."""
    _check_variant(variant)
    b = _Builder(variant)
    helper, tp = b.helper, b.tp
    b.const("axis0", tp.INT64, [1], [0])
    b.const("axis1", tp.INT64, [1], [1])
    b.const("type0", tp.INT64, [], [0])
    b.const("qkv_split", tp.INT64, [3], [HIDDEN] * 3)
    word = b.external("embeddings.word_embeddings.weight", (VOCAB, HIDDEN))
    position = b.external("embeddings.position_embeddings.weight", (MAX_POSITIONS, HIDDEN))
    token_type = b.external("embeddings.token_type_embeddings.weight", (2, HIDDEN))
    # embeddings = word[ids] + token_type[0] (one segment), then + position[0:S], as BertEmbeddings adds them
    seq_len = b.op("Gather", [b.op("Shape", ["input_ids"]), "axis1"], axis=0)
    positions = b.op("Slice", [position, "axis0", seq_len, "axis0"])
    summed = b.op(
        "Add", [b.op("Gather", [word, "input_ids"], axis=0), b.op("Gather", [token_type, "type0"], axis=0)]
    )
    x = b.op(
        "LayerNormalization",
        [b.op("Add", [summed, positions]), *b.norm_params("embeddings.LayerNorm")],
        axis=-1,
        epsilon=LAYER_NORM_EPS,
    )
    mask = b.op("Cast", ["attention_mask"], to=tp.INT32)  # MultiHeadAttention's key padding mask, [B, S]
    for i in range(LAYERS):
        x = b.layer(x, mask, i)
    b.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="output"))

    inputs = [
        helper.make_tensor_value_info("input_ids", tp.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("attention_mask", tp.INT64, ["batch", "sequence"]),
    ]
    outputs = [helper.make_tensor_value_info("last_hidden_state", tp.FLOAT, ["batch", "sequence", HIDDEN])]
    graph = helper.make_graph(b.nodes, f"all-MiniLM-L6-v2-{variant}", inputs, outputs, b.initializers)
    opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="memq.embed.onnx_graph")
    model.ir_version = 8
    model.doc_string = "sentence-transformers/all-MiniLM-L6-v2 (BertModel encoder); memq supplies the weights"
    return model


def serialized(variant: str) -> bytes:
    """The bytes of the shipped graph file of ``variant``."""
    return build_graph(variant).SerializeToString(deterministic=True)


def main(argv: list[str] | None = None) -> int:
    out_dir = Path(argv[0]) if argv else DATA_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    for variant in VARIANTS:
        (out_dir / GRAPH_FILES[variant]).write_bytes(serialized(variant))
        print(f"wrote {out_dir / GRAPH_FILES[variant]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
