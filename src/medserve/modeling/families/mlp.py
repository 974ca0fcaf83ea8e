"""A multilayer perceptron in PyTorch behind the scikit-learn estimator API, on imputed and
scaled inputs; scored by the fast path through the network itself and explained with
SHAP's DeepExplainer. torch and shap are imported only when a network is fitted, scored
or explained, so knowing the family costs nothing."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from medserve.data.schema import Schema
from medserve.modeling.families.base import (
    Attribution,
    Attributor,
    EncodedInput,
    NativeMissing,
    encoded_background,
    estimator_of,
    first_value,
    matrix_attributor,
    preprocessed,
)
from medserve.modeling.model import TrainedModel

if TYPE_CHECKING:
    import torch


def network_risk(network: torch.nn.Module, matrix: np.ndarray) -> np.ndarray:
    """The network's risk of the event: float32 inputs, sigmoid, as float64."""
    import torch

    with torch.no_grad():
        logits = network(torch.from_numpy(np.asarray(matrix, dtype=np.float32)))
    return torch.sigmoid(logits.squeeze(1)).double().numpy()


def _linear(n_inputs: int, n_outputs: int, generator: torch.Generator) -> torch.nn.Linear:
    """A dense layer initialised as torch's nn.Linear initialises itself (Kaiming-uniform
    weights, biases uniform in ±1/√fan-in, drawn in that order), from ``generator``."""
    from torch import nn
    from torch.nn.utils import skip_init

    layer = skip_init(nn.Linear, n_inputs, n_outputs)  # allocated, nothing drawn yet
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1 / math.sqrt(n_inputs) if n_inputs > 0 else 0
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


class TorchMLPClassifier(ClassifierMixin, BaseEstimator):
    """Dense 64 ReLU → Dense 32 ReLU → 1 sigmoid, Adam and binary cross-entropy.

    Defaults train it properly: early stopping on a stratified validation split and
    class weights. ``validation_fraction=0`` with ``max_epochs=10`` and
    ``class_weight=None`` is the reference recipe (for benchmarks).

    Fitting draws from its own generators seeded by ``random_state`` (one for the initial
    weights, one for the batch order), never from torch's global one: the same seed gives
    the same network, and fitting leaves the caller's random state as it was."""

    def __init__(
        self,
        hidden: tuple[int, ...] = (64, 32),
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 32,
        max_epochs: int = 300,
        patience: int = 20,
        validation_fraction: float = 0.15,
        class_weight: str | None = "balanced",
        random_state: int = 0,
    ) -> None:
        self.hidden = hidden
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.random_state = random_state

    def _network(self, n_inputs: int, generator: torch.Generator) -> torch.nn.Sequential:
        from torch import nn

        layers: list[nn.Module] = []
        width = n_inputs
        for size in self.hidden:
            layers += [_linear(width, size, generator), nn.ReLU()]
            width = size
        layers.append(_linear(width, 1, generator))  # the sigmoid lives in the loss and predict
        return nn.Sequential(*layers)

    def fit(self, X, y):
        import torch
        from torch import nn

        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y).astype(np.float32)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        if self.validation_fraction > 0:
            X_fit, X_val, y_fit, y_val = train_test_split(
                X,
                y,
                test_size=self.validation_fraction,
                stratify=y,
                random_state=self.random_state,
            )
        else:
            X_fit, y_fit, X_val, y_val = X, y, None, None
        pos_weight = None
        if self.class_weight == "balanced":
            events = max(float(y_fit.sum()), 1.0)
            pos_weight = torch.tensor([(len(y_fit) - events) / events])
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
        network = self._network(X.shape[1], torch.Generator().manual_seed(self.random_state))
        order_generator = torch.Generator().manual_seed(self.random_state)
        optimiser = torch.optim.Adam(
            network.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        inputs, targets = torch.from_numpy(X_fit), torch.from_numpy(y_fit)
        best_loss, best_state, stale = np.inf, None, 0
        self.n_epochs_ = 0
        for _ in range(self.max_epochs):
            network.train()
            order = torch.randperm(len(inputs), generator=order_generator)
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                optimiser.zero_grad()
                loss = loss_fn(network(inputs[batch]).squeeze(1), targets[batch])
                loss.backward()
                optimiser.step()
            self.n_epochs_ += 1
            if X_val is None:
                continue
            network.eval()
            with torch.no_grad():
                val_loss = float(
                    loss_fn(network(torch.from_numpy(X_val)).squeeze(1), torch.from_numpy(y_val))
                )
            if val_loss < best_loss - 1e-5:
                best_loss, stale = val_loss, 0
                best_state = {k: v.clone() for k, v in network.state_dict().items()}
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            network.load_state_dict(best_state)
        network.eval()
        self.network_ = network
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "network_")
        risk = network_risk(self.network_, X)
        return np.column_stack([1.0 - risk, risk])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


@dataclass(frozen=True)
class NetworkRisk:
    """The network on the encoded matrix, exactly as TorchMLPClassifier.predict_proba."""

    network: torch.nn.Module

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return network_risk(self.network, matrix)


@dataclass
class DeepAttribution:
    """The network through SHAP's DeepExplainer (DeepLIFT rescale rule), in float64 so the
    contributions add up to the network's log-odds to ~1e-12."""

    network: torch.nn.Module
    background: np.ndarray  # (rows, inputs) encoded background sample
    _explainer: Any = field(default=None, init=False, repr=False)
    _base: float = field(default=0.0, init=False, repr=False)

    method = "SHAP DeepExplainer (DeepLIFT) against a training background sample"

    def __call__(self, matrix: np.ndarray) -> Attribution:
        import shap  # a 2-second import: only MLP explanations need it
        import torch

        if self._explainer is None:
            network = copy.deepcopy(self.network).double().eval()
            reference = torch.from_numpy(np.asarray(self.background, dtype=np.float64))
            self._explainer = shap.DeepExplainer(network, reference)
            self._base = float(np.ravel(self._explainer.expected_value)[0])
        values = self._explainer.shap_values(
            torch.from_numpy(np.asarray(matrix, dtype=np.float64)), check_additivity=False
        )
        contributions = np.asarray(values, dtype=np.float64).reshape(len(matrix), -1)
        return Attribution(np.full(len(matrix), self._base), contributions)


def _network_of(pipeline: Pipeline) -> torch.nn.Module | None:
    estimator = estimator_of(pipeline)
    if isinstance(estimator, TorchMLPClassifier):
        return estimator.network_
    return None


class MLPFamily:
    name = "mlp"
    # Opt-in: on the panel (bench/quality.py --panel) it costs ~10x logistic a fold, and
    # torch's import alone ~2 s, for no gain in the blend.
    in_auto = False
    native_missing: NativeMissing | None = None
    libraries: Mapping[str, str] = MappingProxyType({"torch": "torch", "shap": "shap"})

    def build(self, schema: Schema, *, seed: int = 0) -> Pipeline:
        return preprocessed(schema, TorchMLPClassifier(random_state=seed))

    def compile(self, pipeline: Pipeline, encoding: EncodedInput) -> NetworkRisk | None:
        network = _network_of(pipeline)
        return NetworkRisk(network) if network is not None else None

    def attribution(self, model: TrainedModel) -> Attributor | None:
        network = _network_of(model.pipeline)
        if network is None:
            return None
        attribute = DeepAttribution(network, encoded_background(model))
        return matrix_attributor(model.pipeline, attribute, DeepAttribution.method)

    def frozen(self, pipeline: Pipeline) -> Pipeline:
        """Refitting trains as many epochs as this fit chose, without a validation split."""
        epochs = getattr(estimator_of(pipeline), "n_epochs_", None)
        twin = clone(pipeline)
        if epochs is not None:
            twin.set_params(model__max_epochs=int(epochs), model__validation_fraction=0.0)
        return twin

    def fitted_params(self, pipeline: Pipeline) -> dict[str, Any]:
        epochs = getattr(estimator_of(pipeline), "n_epochs_", None)
        return {} if epochs is None else {"n_epochs": first_value(epochs)}


FAMILY = MLPFamily()
