"""Tabular models trained elsewhere and imported as ONNX (``medserve models import NAME
--onnx FILE``): onnxruntime scores one float32 input tensor [N, k] holding the schema's
numeric columns in order, and one output is read as the risk (a probability column, or
log-odds). Explained by SHAP's permutation explainer on the log-odds against the import's
background sample: approximate (sampled permutations), exact in sum."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from medserve.core.risk import risk_logit
from medserve.core.stored_files import StoredFile
from medserve.data.schema import Schema
from medserve.errors import ConfigError, ExplanationUnavailable, SchemaError, option
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

NAME = "onnx"
SCALES = ("probability", "logit")
METHOD = (
    "permutation SHAP on the log-odds against the import's background sample "
    "(approximate: sampled permutations)"
)
# Outputs read as the risk when the schema file names none and the model has several.
PROBABILITY_OUTPUTS = ("probabilities", "probability", "output_probability", "probs")


class OnnxRiskModel(ImportedEstimator):
    """An ONNX model's risk: ``columns`` of the prepared frame as the float32 tensor
    ``input_name``; ``output_name``'s column ``class_index`` (or its only value) as the
    risk, read as a probability or, with ``scale="logit"``, as log-odds."""

    def __init__(
        self,
        files: tuple[StoredFile, ...] = (),
        input_name: str = "",
        columns: tuple[str, ...] = (),
        output_name: str = "",
        class_index: int = 1,
        scale: str = "probability",
    ) -> None:
        self.files = files
        self.input_name = input_name
        self.columns = columns
        self.output_name = output_name
        self.class_index = class_index
        self.scale = scale

    def _load(self, folder: Path) -> Any:
        return _session(folder / self.files[0].name)

    def matrix(self, prepared: pd.DataFrame) -> np.ndarray:
        """The input tensor; SchemaError at the first missing value (no rule for it)."""
        matrix = prepared[list(self.columns)].to_numpy(dtype=np.float32)
        missing = np.argwhere(np.isnan(matrix))
        if len(missing):
            row, column = missing[0]
            raise SchemaError(
                f"column '{self.columns[column]}' row {row + 1}: missing, and this imported "
                "ONNX model has no rule for missing values; fill it in"
            )
        return matrix

    def _risk(self, runtime: Any, prepared: pd.DataFrame) -> np.ndarray:
        return self.risk_of_matrix(runtime, self.matrix(prepared))

    def risk_of_matrix(self, runtime: Any, matrix: np.ndarray) -> np.ndarray:
        (output,) = runtime.run([self.output_name], {self.input_name: matrix})
        if isinstance(output, list):  # a sequence of maps (ZipMap): class label → value
            values = np.array([_class_value(row, self.class_index) for row in output])
        else:
            values = np.asarray(output, dtype=float)
            if values.ndim == 2 and values.shape[1] > 1:
                values = values[:, self.class_index]
            values = values.reshape(len(matrix))
        if self.scale == "logit":
            return 1.0 / (1.0 + np.exp(-values))
        return values

    def log_odds(self, matrix: np.ndarray) -> np.ndarray:
        return risk_logit(self.risk_of_matrix(self._runtime_loaded(), matrix.astype(np.float32)))


def _session(path: Path) -> Any:
    """An onnxruntime session of the model file at ``path`` (CUDA where available)."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider",) if p in available]
    try:
        return onnxruntime.InferenceSession(
            str(path), providers=[*providers, "CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own types for a bad file
        raise ConfigError(
            f"ONNX model {path.name} cannot be loaded by onnxruntime "
            f"({str(error).splitlines()[0][:200]}); check that the file is a whole ONNX model"
        ) from None


def _class_value(row: Mapping[Any, float], class_index: int) -> float:
    if class_index in row:
        return float(row[class_index])
    return float(list(row.values())[class_index])


def check_self_contained(path: Path) -> None:
    """ConfigError where the model keeps tensors in files beside it (ONNX external data):
    only the model file is imported, so such a model would not load once stored."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's own errors: not an ONNX model
        raise ConfigError(
            f"ONNX model {path.name} cannot be read ({str(error).splitlines()[0][:200]}); "
            "check that the file is a whole ONNX model"
        ) from None
    external = [
        tensor.name or "(unnamed)"
        for tensor in _tensors(model.graph)
        if tensor.data_location == onnx.TensorProto.EXTERNAL
    ]
    if external:
        raise ConfigError(
            f"ONNX model {path.name} keeps {len(external)} tensor(s) in external data files "
            f"(first: '{external[0]}'), which are not imported: save it with all tensors "
            "inside the file, onnx.save_model(model, path, save_as_external_data=False)"
        )


def _tensors(graph: Any) -> Iterator[Any]:
    """Every tensor of an ONNX graph: its initializers, node attributes and subgraphs'."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def open_onnx(
    path: Path,
    columns: Sequence[str],
    *,
    input_name: str | None = None,
    output_name: str | None = None,
    class_index: int = 1,
    scale: str = "probability",
) -> OnnxRiskModel:
    """The ONNX model at ``path`` loaded and checked against the schema: its one input
    takes ``len(columns)`` float32 numbers per row and ``output_name`` is one of its
    outputs (ConfigError naming the input or the outputs there are, otherwise)."""
    if scale not in SCALES:
        raise ConfigError(f"output scale '{scale}' is not one of {', '.join(SCALES)}")
    session = _session(path)
    inputs = session.get_inputs()
    described = ", ".join(f"{i.name} {_shape(i.shape)} {i.type}" for i in inputs)
    if input_name is None:
        if len(inputs) != 1:
            raise ConfigError(
                f"ONNX model {path.name} has {len(inputs)} inputs ({described}); medserve "
                "feeds one float32 tensor [N, k]: name it with onnx.input in the schema file"
            )
        input_name = inputs[0].name
    chosen = next((i for i in inputs if i.name == input_name), None)
    if chosen is None:
        raise ConfigError(
            f"ONNX input '{input_name}' named in the schema file is not an input of "
            f"{path.name}; its inputs are: {described}"
        )
    if len(inputs) != 1:
        others = ", ".join(i.name for i in inputs if i.name != input_name)
        raise ConfigError(
            f"ONNX model {path.name} also needs input(s) {others}; medserve feeds one "
            "float32 tensor [N, k]: export the model with one input"
        )
    width = chosen.shape[-1] if len(chosen.shape) == 2 else None
    if (
        chosen.type != "tensor(float)"
        or len(chosen.shape) != 2
        or (isinstance(width, int) and width != len(columns))
    ):
        raise ConfigError(
            f"ONNX input '{input_name}' is {chosen.type} {_shape(chosen.shape)}, but the schema "
            f"file maps {len(columns)} column(s) ({', '.join(columns)}) to a float32 tensor "
            f"[N, {len(columns)}]; make the schema's onnx.columns match the model's input"
        )
    outputs = [o.name for o in session.get_outputs()]
    if output_name is None:
        named = [o for o in outputs if o.lower() in PROBABILITY_OUTPUTS]
        if len(outputs) != 1 and not named:
            raise ConfigError(
                f"ONNX model {path.name} has outputs {', '.join(outputs)}: name the one to "
                "read as the risk with output.name in the schema file"
            )
        output_name = outputs[0] if len(outputs) == 1 else named[0]
    if output_name not in outputs:
        raise ConfigError(
            f"ONNX output '{output_name}' named in the schema file is not an output of "
            f"{path.name}; its outputs are: {', '.join(outputs)}"
        )
    model = OnnxRiskModel(
        input_name=input_name,
        columns=tuple(columns),
        output_name=output_name,
        class_index=class_index,
        scale=scale,
    )
    model._runtime = session
    _check_output(model, session, len(columns))
    return model


def _check_output(model: OnnxRiskModel, session: Any, width: int) -> None:
    """Score one row of zeros: the output read must be one risk between 0 and 1 per row."""
    try:
        risk = model.risk_of_matrix(session, np.zeros((2, width), dtype=np.float32))
    except (IndexError, ValueError) as error:
        raise ConfigError(
            f"ONNX output '{model.output_name}' has no class {model.class_index} "
            f"({str(error).splitlines()[0]}); set output.class_index in the schema file"
        ) from None
    except Exception as error:  # onnxruntime's own error types: the model cannot run
        raise ConfigError(
            f"ONNX model cannot score the schema's columns: {str(error).splitlines()[0][:200]}"
        ) from None
    if not np.all(np.isfinite(risk)) or np.any((risk < 0) | (risk > 1)):
        raise ConfigError(
            f"ONNX output '{model.output_name}' gives values outside 0..1: it is not a "
            "probability; name the probability output, or set output.scale: logit"
        )


def _shape(shape: Sequence[Any]) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) else "N" for d in shape) + "]"


class PermutationAttribution:
    """SHAP's permutation explainer on the ONNX model's log-odds, background as masker."""

    method = METHOD

    def __init__(self, estimator: OnnxRiskModel, background: np.ndarray) -> None:
        self._estimator = estimator
        self._background = background

    def __call__(self, prepared: pd.DataFrame) -> Attribution:
        import shap

        matrix = self._estimator.matrix(prepared).astype(float)
        width = matrix.shape[1]
        explainer = shap.PermutationExplainer(
            self._estimator.log_odds, shap.maskers.Independent(self._background), seed=0
        )
        values = explainer(matrix, max_evals=max(2 * width + 1, 10 * (width + 1)), silent=True)
        return Attribution(
            base=np.asarray(values.base_values, dtype=float).reshape(len(matrix)),
            contributions=np.asarray(values.values, dtype=float).reshape(len(matrix), width),
        )


class OnnxFamily:
    name = NAME
    in_auto = False  # imported, never trained here
    native_missing: NativeMissing | None = None
    libraries: Mapping[str, str] = MappingProxyType({"onnxruntime": "onnxruntime", "shap": "shap"})
    source_kind = "file"
    runtime_libraries = ("onnxruntime",)

    def open_import(
        self,
        path: Path,
        schema: Schema,
        section: Mapping[str, Any],
        output: Mapping[str, Any],
        notices: list[str],
    ) -> tuple[list[Path], ImportedEstimator]:
        """The ONNX file at ``path``: the schema's numeric columns (``onnx.columns``, in
        order; default all) as its one float32 input (``onnx.input``), ``output``'s
        ``name``, ``class_index`` and ``scale`` read as the risk."""
        if not path.is_file():
            raise ConfigError(f"ONNX file {path}: no such file")
        features = schema.features
        unfit = [c for c in features if c.type not in ("numeric", "binary") or c.categories]
        if unfit:
            raise ConfigError(
                f"column '{unfit[0].name}' is {unfit[0].type}: an ONNX model is fed one "
                "float32 tensor, so its columns must be numeric (or 0/1 binary)"
            )
        columns = section.get("columns") or [c.name for c in features]
        names = {c.name for c in features}
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise ConfigError(
                f"onnx.columns names '{unknown[0]}', which is not a column of the schema file"
            )
        check_self_contained(path)
        estimator = open_onnx(
            path,
            [str(c) for c in columns],
            input_name=section.get("input"),
            output_name=output.get("name"),
            class_index=int(output.get("class_index", 1)),
            scale=str(output.get("scale", "probability")),
        )
        return [path], estimator

    def build(self, schema: Schema, *, seed: int = 0) -> Pipeline:
        raise ConfigError(
            f"onnx models are imported, not trained: `medserve models import NAME` with "
            f"{option('onnx')} FILE and {option('schema_file')} FILE"
        )

    def compile(self, pipeline: Pipeline, encoding: EncodedInput) -> RawRisk | None:
        return None  # onnxruntime scores the prepared frame: the service uses the pipeline

    def attribution(self, model: TrainedModel) -> Attributor | None:
        estimator = estimator_of(model.pipeline)
        if not isinstance(estimator, OnnxRiskModel):
            return None
        if model.background is None or not len(model.background):
            raise ExplanationUnavailable(
                "this imported ONNX model has no background sample to measure contributions "
                "against: import it again with a 'background' section of rows in the schema file"
            )
        background = estimator.matrix(model.schema.prepare(model.background)).astype(float)
        parts = tuple({column: 1.0} for column in estimator.columns)
        return Attributor(
            PermutationAttribution(estimator, background), METHOD, parts, reads_matrix=False
        )

    def fitted_params(self, pipeline: Pipeline) -> dict[str, Any]:
        estimator = estimator_of(pipeline)
        if not isinstance(estimator, OnnxRiskModel):
            return {}
        return {
            "input": estimator.input_name,
            "columns": list(estimator.columns),
            "output": estimator.output_name,
            "class_index": estimator.class_index,
            "scale": estimator.scale,
        }


FAMILY = OnnxFamily()
