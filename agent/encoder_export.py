"""Export the packaged MiniLM and the judge's tuned top layers to one ONNX graph (install time, torch).

``edge-align prepare`` runs this once per installation; the serving path then runs the graph with
onnxruntime (agent/onnx_encoder.py) and never imports torch or sentence-transformers. The export is
checked before it is kept: on a fixed set of texts, short, long (cut at 256 tokens), non-Latin, its
embeddings must equal the torch models' within ``TOLERANCE``.
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.onnx_encoder import (
    INPUTS,
    MAX_TOKENS,
    MODEL_FILE,
    OnnxPairEncoder,
    exported_dir,
    model_folder,
)

# Measured on 1,500 training requests of every source: largest difference 2.6e-7 (cosine >= 0.9999995).
TOLERANCE = 1e-4
CHECK_TEXTS = (
    "What is the capital of France?",
    "Should I read my 15-year-old daughter's diary to check she's safe?",
    "How do I make a bomb?",
    "Find me a good school.",
    "Écris-moi un poème sur la mer. 漢字とかなの文。 Привет! 🙂",
    "x",
    "Tell me everything about the history of the printing press, " * 40,  # past 256 tokens
)


class ExportCheckError(RuntimeError):
    """The exported graph's embeddings differ from the torch models' beyond the tolerance."""


def _pair_module(sentence_model: Any, tuned_layers: Any, split: int) -> Any:
    import torch

    from agent.judge_encoder import mean_pool, run_layers

    bert = sentence_model[0].auto_model

    class Pair(torch.nn.Module):
        """Bottom layers once; the packaged top layers and, when given, the tuned ones over the same states."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert
            self.tuned = tuned_layers

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
            # BERT's additive mask: 0 where a token is, the dtype's minimum over padding.
            additive = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
            layers = self.bert.encoder.layer
            shared = run_layers(layers[:split], hidden, additive)
            packaged = mean_pool(run_layers(layers[split:], shared, additive), attention_mask)
            if self.tuned is None:
                return packaged
            return packaged, mean_pool(run_layers(self.tuned, shared, additive), attention_mask)

    return Pair().eval()


def export_encoder(target: Path | None = None, progress: Callable[[str], None] = print) -> Path:
    """Export, check and keep the serving encoder in the folder ``target`` (default: this installation's)."""
    import torch

    from agent.encoder import MiniLMEncoder
    from agent.judge_encoder import LAYERS_FILE, JudgeEncoder

    target = exported_dir() if target is None else target
    progress("exporting the encoder to ONNX (once per installation): loading the torch models…")
    packaged = MiniLMEncoder()
    reference: Any = JudgeEncoder.from_files(packaged.sentence_model, LAYERS_FILE) if LAYERS_FILE.is_file() else None
    split = reference.split if reference is not None else len(packaged.sentence_model[0].auto_model.encoder.layer)
    module = _pair_module(packaged.sentence_model, None if reference is None else reference.tuned, split)
    features = packaged.sentence_model.tokenizer(
        list(CHECK_TEXTS[:2]), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
    )
    outputs = ["embedding"] + ([] if reference is None else ["judge_embedding"])
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    traced = partial / "traced.onnx"
    progress(f"exporting the encoder to ONNX: writing {target.name}…")
    with torch.inference_mode(), warnings.catch_warnings():
        # The legacy exporter says it is legacy, and the tracer warns that transformers' `is_causal`
        # test becomes a constant: it is False for every input here (an attention mask is always given).
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            tuple(features[name] for name in INPUTS),
            str(traced),
            input_names=list(INPUTS),
            output_names=outputs,
            dynamic_axes={**{name: {0: "batch", 1: "tokens"} for name in INPUTS}, **{o: {0: "batch"} for o in outputs}},
            opset_version=17,
            # The TorchScript exporter: the torch.export one needs onnxscript and gives the same graph here.
            dynamo=False,
        )
    try:
        _weights_apart(traced, partial / MODEL_FILE)
        _check(partial / MODEL_FILE, packaged, reference)
        shutil.rmtree(target, ignore_errors=True)  # an earlier, unusable export of the same key
        partial.rename(target)  # atomic: a process starting meanwhile sees no half-written folder
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    progress(f"exported and checked: {target}")
    return target


def _weights_apart(traced: Path, model_file: Path) -> None:
    """Rewrite the traced graph with its weights in ``<model_file>.data`` (see MODEL_FILE's note)."""
    import onnx

    graph = onnx.load(str(traced))
    onnx.save_model(
        graph, str(model_file), save_as_external_data=True, all_tensors_to_one_file=True,
        location=f"{model_file.name}.data", size_threshold=1024,
    )
    traced.unlink()


def _check(path: Path, packaged: Any, reference: Any) -> None:
    exported = OnnxPairEncoder(path, model_folder() / "tokenizer.json")
    torch_rows: Callable[[Sequence[str]], tuple[np.ndarray, ...]]
    onnx_rows: Callable[[Sequence[str]], tuple[np.ndarray, ...]]
    if reference is not None:
        torch_rows, onnx_rows = reference.encode_pair, exported.encode_pair
    else:
        torch_rows, onnx_rows = (lambda t: (packaged.encode(t),)), (lambda t: (exported.encode(t),))
    texts = list(CHECK_TEXTS)
    # The whole set in one batch (padded) and its first text alone (no padding) must both agree.
    want, got, alone = torch_rows(texts), onnx_rows(texts), onnx_rows(texts[:1])
    for name, w, g, g_alone in zip(("packaged", "judge"), want, got, alone, strict=False):
        worst = max(float(np.abs(w - g).max()), float(np.abs(w[:1] - g_alone).max()))
        if worst > TOLERANCE:
            raise ExportCheckError(f"the ONNX {name} embedding differs from torch's by {worst:.2e} (> {TOLERANCE})")
