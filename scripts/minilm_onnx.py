"""Writes all-MiniLM-L6-v2 as an ONNX graph, from its safetensors weights, for ONNX Runtime.

No PyPI package ships this model as ONNX and exporting through PyTorch would need torch
(gigabytes of CUDA wheels here), so the BERT encoder is written out op by op with the
`onnx` package: embeddings (word + position + token type 0) and LayerNorm, six layers of
12-head self-attention with the padding mask, GELU (erf) feed-forward, post-LayerNorm,
then sentence-transformers' mean pooling over the attention mask and L2 normalisation.
Inputs `input_ids` and `attention_mask` (int64, [batch, tokens]); output `embeddings`
(float32, [batch, 384], unit length). The same weights, the same arithmetic as the
candle model in search/src/embed/local.rs; search/tests/similarity.rs checks both
against sentence-transformers' own similarities.

Usage: python scripts/minilm_onnx.py MODEL_DIR   (writes MODEL_DIR/model.onnx)
"""

import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import load_file


def main():
    model_dir = sys.argv[1]
    config = json.load(open(os.path.join(model_dir, "config.json")))
    w = load_file(os.path.join(model_dir, "model.safetensors"))
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head = hidden // heads
    eps = float(config["layer_norm_eps"])
    nodes, inits = [], []

    def const(name, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(op, inputs, output, **attrs):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def linear(x, prefix, out):
        # torch stores Linear weights as [out, in]; MatMul wants [in, out].
        wt = const(prefix + ".weight_t", w[prefix + ".weight"].T.copy())
        b = const(prefix + ".bias", w[prefix + ".bias"])
        return node("Add", [node("MatMul", [x, wt], out + "_mm"), b], out)

    def layer_norm(x, prefix, out):
        return node(
            "LayerNormalization",
            [x, const(prefix + ".weight", w[prefix + ".weight"]), const(prefix + ".bias", w[prefix + ".bias"])],
            out,
            axis=-1,
            epsilon=eps,
        )

    # Embeddings: word + position (0..S) + token type 0.
    words = node("Gather", [const("word_embeddings", w["embeddings.word_embeddings.weight"]), "input_ids"], "words")
    shape = node("Shape", ["input_ids"], "ids_shape")
    seq = node("Gather", [shape, const("one_index", np.array(1, dtype=np.int64))], "seq_len")
    positions = node(
        "Range", [const("zero_i64", np.array(0, dtype=np.int64)), seq, const("one_i64", np.array(1, dtype=np.int64))],
        "positions",
    )
    pos = node("Gather", [const("position_embeddings", w["embeddings.position_embeddings.weight"]), positions], "pos")
    type0 = const("token_type_0", w["embeddings.token_type_embeddings.weight"][0])
    emb = node("Add", [node("Add", [words, pos], "words_pos"), type0], "emb_sum")
    x = layer_norm(emb, "embeddings.LayerNorm", "emb")

    # Additive attention mask: 0 where attended, a large negative where padded: [B, 1, 1, S].
    mask_f = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    mask4 = node("Unsqueeze", [mask_f, const("axes_1_2", np.array([1, 2], dtype=np.int64))], "mask4")
    inverted = node("Sub", [const("one_f", np.array(1.0, dtype=np.float32)), mask4], "mask_inverted")
    bias = node("Mul", [inverted, const("neg_big", np.array(-10000.0, dtype=np.float32))], "mask_bias")

    split_shape = const("split_heads", np.array([0, 0, heads, head], dtype=np.int64))
    merge_shape = const("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    scale = const("scale", np.array(1.0 / np.sqrt(head), dtype=np.float32))
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"

        def heads_of(name):
            t = linear(x, f"{p}.attention.self.{name}", f"l{i}_{name}")
            r = node("Reshape", [t, split_shape], f"l{i}_{name}_split")
            return r

        q = node("Transpose", [heads_of("query")], f"l{i}_q", perm=[0, 2, 1, 3])
        k = node("Transpose", [heads_of("key")], f"l{i}_k", perm=[0, 2, 3, 1])
        v = node("Transpose", [heads_of("value")], f"l{i}_v", perm=[0, 2, 1, 3])
        scores = node("Mul", [node("MatMul", [q, k], f"l{i}_qk"), scale], f"l{i}_scaled")
        probs = node("Softmax", [node("Add", [scores, bias], f"l{i}_masked")], f"l{i}_probs", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v], f"l{i}_ctx_heads")], f"l{i}_ctx_t", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge_shape], f"l{i}_ctx")
        attn = linear(ctx, f"{p}.attention.output.dense", f"l{i}_attn_out")
        x = layer_norm(node("Add", [attn, x], f"l{i}_attn_res"), f"{p}.attention.output.LayerNorm", f"l{i}_attn_ln")
        inter = linear(x, f"{p}.intermediate.dense", f"l{i}_inter")
        # Exact GELU, as BERT and sentence-transformers compute it: 0.5 · x · (1 + erf(x / √2)).
        erf = node("Erf", [node("Div", [inter, const(f"sqrt2_{i}", np.array(np.sqrt(2.0), dtype=np.float32))], f"l{i}_div")], f"l{i}_erf")
        gelu = node(
            "Mul",
            [node("Mul", [inter, node("Add", [erf, const(f"one_{i}", np.array(1.0, dtype=np.float32))], f"l{i}_erf1")], f"l{i}_xerf"),
             const(f"half_{i}", np.array(0.5, dtype=np.float32))],
            f"l{i}_gelu",
        )
        out = linear(gelu, f"{p}.output.dense", f"l{i}_out")
        x = layer_norm(node("Add", [out, x], f"l{i}_out_res"), f"{p}.output.LayerNorm", f"l{i}_out_ln")

    # Mean pooling over real tokens, then unit length (sentence-transformers' Pooling and
    # Normalize modules).
    mask3 = node("Unsqueeze", [mask_f, const("axis_2", np.array([2], dtype=np.int64))], "mask3")
    summed = node("ReduceSum", [node("Mul", [x, mask3], "masked_tokens"), const("axis_1", np.array([1], dtype=np.int64))], "summed", keepdims=0)
    counts = node("ReduceSum", [mask3, const("axis_1b", np.array([1], dtype=np.int64))], "counts", keepdims=0)
    mean = node("Div", [summed, node("Max", [counts, const("min_count", np.array(1e-9, dtype=np.float32))], "counts_safe")], "mean")
    norm = node("ReduceL2", [mean, const("axis_last", np.array([1], dtype=np.int64))], "norm", keepdims=1)
    node("Div", [mean, node("Max", [norm, const("min_norm", np.array(1e-12, dtype=np.float32))], "norm_safe")], "embeddings")

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "tokens"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", hidden])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="fibonacco")
    model.ir_version = 8
    onnx.checker.check_model(model)
    target = os.path.join(model_dir, "model.onnx")
    onnx.save(model, target + ".partial")
    os.replace(target + ".partial", target)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
