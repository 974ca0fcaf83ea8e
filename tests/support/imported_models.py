"""Small models made in the test, as a user would bring them: an ONNX logistic model built
with ``onnx.helper`` and a tiny BERT note classifier saved with safetensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The ONNX model's risk: sigmoid(INTERCEPT + COEFFICIENTS · [age, bmi]).
COEFFICIENTS = (0.05, 0.1)
INTERCEPT = -5.0
WORDS = ("chest", "pain", "troponin", "elevated", "normal", "stable", "patient", "is", "no")


def logistic_onnx(path: Path, *, input_name: str = "x", width: int = 2) -> Path:
    """MatMul + Add + Sigmoid over a float32 input [N, width], output ``risk`` [N, 1]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.array(COEFFICIENTS[:width], dtype=np.float32).reshape(width, 1)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", [input_name, "w"], ["z0"]),
            helper.make_node("Add", ["z0", "b"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["risk"]),
        ],
        "logistic",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("risk", TensorProto.FLOAT, ["N", 1])],
        initializer=[
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(np.array([INTERCEPT], dtype=np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def formula_risk(age: np.ndarray, bmi: np.ndarray) -> np.ndarray:
    z = INTERCEPT + COEFFICIENTS[0] * np.asarray(age) + COEFFICIENTS[1] * np.asarray(bmi)
    return 1.0 / (1.0 + np.exp(-z))


def tiny_bert(folder: Path) -> Path:
    """A 2-layer BERT sequence classifier (hidden 32) with a word-level tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    vocab = {token: i for i, token in enumerate([*specials, *WORDS, "."])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=64,
    )
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
    )
    torch.manual_seed(0)
    network = BertForSequenceClassification(config)
    folder.mkdir(parents=True, exist_ok=True)
    network.save_pretrained(str(folder), safe_serialization=True)
    fast.save_pretrained(str(folder))
    return folder
