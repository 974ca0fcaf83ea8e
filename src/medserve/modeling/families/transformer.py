"""Note classifiers trained elsewhere and imported as a Hugging Face transformers folder
(``medserve models import NAME --transformers DIR``): safetensors weights, config.json and
the tokenizer's files, read offline. The risk is the probability the sequence classifier
gives its positive label for the note. Pickled weights (``pytorch_model.bin``, ``.pt``,
``.pkl``) are refused: unpickling them can run code.

Explained approximately: the note's contribution is its log-odds less an empty note's,
and its sentences' effects come from leave-one-sentence-out (``explain.sentences``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from medserve.core.risk import risk_logit
from medserve.core.stored_files import StoredFile
from medserve.data.schema import Schema
from medserve.errors import ConfigError, option
from medserve.modeling.families.base import (
    Attribution,
    Attributor,
    EncodedInput,
    NativeMissing,
    RawRisk,
    estimator_of,
)
from medserve.modeling.families.imported import ImportedEstimator
from medserve.modeling.model import TrainedModel

NAME = "transformers"
METHOD = (
    "the note's log-odds less an empty note's, its sentences by leave-one-sentence-out "
    "(approximate)"
)
BATCH_SIZE = 16
# Weights stored as pickles: loading them can run code, so they are never imported.
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
# The files of a transformers folder that are imported (others are left out, said so).
FOLDER_SUFFIXES = (".json", ".safetensors", ".txt", ".model")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model")
# The longest note read, in tokens (longer notes are cut: the model never sees the rest).
MAX_TOKENS = 512


class TransformerRiskModel(ImportedEstimator):
    """A sequence classifier's probability of label ``positive_index`` for the note in
    column ``text_column`` (a missing note reads as an empty one); a one-label head's
    logit is read as log-odds."""

    def __init__(
        self,
        files: tuple[StoredFile, ...] = (),
        text_column: str = "",
        positive_index: int = 1,
        max_tokens: int = MAX_TOKENS,
    ) -> None:
        self.files = files
        self.text_column = text_column
        self.positive_index = positive_index
        self.max_tokens = max_tokens

    def _load(self, folder: Path) -> Any:
        return load_classifier(folder)

    def _risk(self, runtime: Any, prepared: pd.DataFrame) -> np.ndarray:
        notes = [
            note if isinstance(note, str) else "" for note in prepared[self.text_column].tolist()
        ]
        return self.risk_of_notes(notes)

    def risk_of_notes(self, notes: list[str]) -> np.ndarray:
        import torch

        tokenizer, network = self._runtime_loaded()
        risks = []
        with torch.no_grad():
            for start in range(0, len(notes), BATCH_SIZE):
                batch = tokenizer(
                    notes[start : start + BATCH_SIZE],
                    padding=True,
                    truncation=True,
                    max_length=min(self.max_tokens, _model_max(tokenizer)),
                    return_tensors="pt",
                )
                logits = network(**batch).logits.double()
                if logits.shape[1] == 1:
                    risks.append(torch.sigmoid(logits[:, 0]).numpy())
                else:
                    risks.append(torch.softmax(logits, dim=1)[:, self.positive_index].numpy())
        return np.concatenate(risks) if risks else np.zeros(0)


def _model_max(tokenizer: Any) -> int:
    limit = getattr(tokenizer, "model_max_length", MAX_TOKENS)
    return int(limit) if isinstance(limit, int) and 0 < limit < 1_000_000 else MAX_TOKENS


def load_classifier(folder: Path) -> tuple[Any, Any]:
    """The tokenizer and the sequence classifier in ``folder``, offline, from safetensors
    only (never a pickle); ConfigError saying what is wrong with the folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never the hub: read before it is imported
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    transformers.logging.set_verbosity_error()  # its own progress bars and notes
    transformers.logging.disable_progress_bar()

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as error:  # transformers raises many types for a bad folder
        raise ConfigError(
            f"the tokenizer in {folder.name} cannot be loaded ({_first_line(error)}); the "
            "folder needs its tokenizer files (tokenizer.json or vocab.txt, tokenizer_config.json)"
        ) from None
    try:
        network = AutoModelForSequenceClassification.from_pretrained(
            str(folder), use_safetensors=True, local_files_only=True
        )
    except Exception as error:
        raise ConfigError(
            f"the model in {folder.name} cannot be loaded ({_first_line(error)}); it needs "
            "config.json and whole safetensors weights of a sequence classifier"
        ) from None
    network.eval()
    return tokenizer, network


def positive_index(network: Any, positive_label: str | int | None) -> int:
    """The index of the event's label in the classifier's head: ``positive_label`` as a
    label name or index of ``config.id2label``; by default 1 of a two-label head."""
    id2label = {int(k): str(v) for k, v in (network.config.id2label or {}).items()}
    n_labels = int(network.config.num_labels)
    labels = ", ".join(f"{i}: {name}" for i, name in sorted(id2label.items()))
    if positive_label is None:
        if n_labels <= 2:
            return n_labels - 1
        raise ConfigError(
            f"the classifier has {n_labels} labels ({labels}): name the event's with "
            "transformers.positive_label in the schema file"
        )
    if isinstance(positive_label, int) and not isinstance(positive_label, bool):
        if 0 <= positive_label < max(n_labels, 1):
            return positive_label
    else:
        found = [i for i, name in id2label.items() if name == str(positive_label)]
        if found:
            return found[0]
    raise ConfigError(
        f"positive_label {positive_label!r} is not a label of the classifier; its labels "
        f"are {labels}"
    )


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


class NoteAttribution:
    """Per row: base = an empty note's log-odds, the note's contribution = its log-odds
    less that (so the two sum to the model's log-odds exactly)."""

    method = METHOD

    def __init__(self, estimator: TransformerRiskModel) -> None:
        self._estimator = estimator

    def __call__(self, prepared: pd.DataFrame) -> Attribution:
        notes = [
            note if isinstance(note, str) else ""
            for note in prepared[self._estimator.text_column].tolist()
        ]
        log_odds = risk_logit(self._estimator.risk_of_notes(notes))
        empty = float(risk_logit(self._estimator.risk_of_notes([""]))[0])
        base = np.full(len(notes), empty)
        return Attribution(base=base, contributions=(log_odds - base).reshape(-1, 1))


class TransformerFamily:
    name = NAME
    in_auto = False  # imported, never trained here
    reads_text = True
    native_missing: NativeMissing | None = None
    libraries: Mapping[str, str] = MappingProxyType(
        {"transformers": "transformers", "torch": "torch", "tokenizers": "tokenizers",
         "safetensors": "safetensors"}
    )  # fmt: skip

    source_kind = "folder"
    runtime_libraries = ("transformers", "torch")

    def open_import(
        self,
        path: Path,
        schema: Schema,
        section: Mapping[str, Any],
        output: Mapping[str, Any],
        notices: list[str],
    ) -> tuple[list[Path], ImportedEstimator]:
        """The folder at ``path`` (safetensors weights, config.json, tokenizer files): the
        schema's one text column (``transformers.text``) read by the classifier, the
        probability of ``transformers.positive_label`` as the risk."""
        folder = path
        if not folder.is_dir():
            raise ConfigError(f"transformers folder {folder}: no such folder")
        links = sorted(p.name for p in folder.iterdir() if p.is_symlink())
        if links:
            raise ConfigError(
                f"transformers folder {folder} holds symbolic links ({', '.join(links)}); "
                "copy the files themselves into the folder, so what is imported is what "
                "the folder holds"
            )
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        weights = [p for p in files if p.suffix == ".safetensors"]
        pickled = [p.name for p in files if p.suffix.lower() in PICKLED_SUFFIXES]
        if not weights:
            found = f" (it holds {', '.join(pickled)})" if pickled else ""
            raise ConfigError(
                f"transformers folder {folder} has no safetensors weights{found}: pickled "
                "weights are refused because loading them can run code; save the model with "
                "save_pretrained(safe_serialization=True) to write model.safetensors"
            )
        if not (folder / "config.json").is_file():
            raise ConfigError(f"transformers folder {folder} has no config.json")
        if not any((folder / name).is_file() for name in TOKENIZER_FILES):
            raise ConfigError(
                f"transformers folder {folder} has no tokenizer files "
                f"({', '.join(TOKENIZER_FILES)}): save the tokenizer into it with save_pretrained"
            )
        imported = [p for p in files if p.suffix in FOLDER_SUFFIXES]
        left_out = [p.name for p in files if p not in imported]
        if left_out:
            notices.append(f"not imported from {folder.name}: {', '.join(left_out)}")
        notes = [c.name for c in schema.features if c.type == "text"]
        text = section.get("text") or (notes[0] if len(notes) == 1 else None)
        if text is None or text not in notes or len(schema.features) != 1:
            raise ConfigError(
                "a transformers model reads one note: the schema file's columns must be that "
                "one text column (name it with transformers.text)"
            )
        tokenizer, network = load_classifier(folder)
        index = positive_index(network, section.get("positive_label"))
        estimator = TransformerRiskModel(text_column=text, positive_index=index)
        estimator._runtime = (tokenizer, network)
        return imported, estimator

    def build(self, schema: Schema, *, seed: int = 0) -> Pipeline:
        raise ConfigError(
            "transformers models are imported, not trained: `medserve models import NAME` "
            f"with {option('transformers')} DIR and {option('schema_file')} FILE"
        )

    def compile(self, pipeline: Pipeline, encoding: EncodedInput) -> RawRisk | None:
        return None  # the network reads the note: the service scores through the pipeline

    def attribution(self, model: TrainedModel) -> Attributor | None:
        estimator = estimator_of(model.pipeline)
        if not isinstance(estimator, TransformerRiskModel):
            return None
        parts = ({estimator.text_column: 1.0},)
        return Attributor(NoteAttribution(estimator), METHOD, parts, reads_matrix=False)

    def fitted_params(self, pipeline: Pipeline) -> dict[str, Any]:
        estimator = estimator_of(pipeline)
        if not isinstance(estimator, TransformerRiskModel):
            return {}
        return {
            "text_column": estimator.text_column,
            "positive_index": estimator.positive_index,
            "max_tokens": estimator.max_tokens,
        }


FAMILY = TransformerFamily()
