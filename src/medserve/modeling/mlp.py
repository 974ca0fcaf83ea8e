"""A multilayer perceptron in PyTorch behind the scikit-learn estimator API."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted
from torch import nn


class TorchMLPClassifier(ClassifierMixin, BaseEstimator):
    """Dense 64 ReLU → Dense 32 ReLU → 1 sigmoid, Adam and binary cross-entropy.

    Defaults train it properly: early stopping on a stratified validation split and
    class weights. ``validation_fraction=0`` with ``max_epochs=10`` and
    ``class_weight=None`` is the reference recipe (for benchmarks)."""

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

    def _network(self, n_inputs: int) -> nn.Sequential:
        layers: list[nn.Module] = []
        width = n_inputs
        for size in self.hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))  # the sigmoid lives in the loss and in predict
        return nn.Sequential(*layers)

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y).astype(np.float32)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        torch.manual_seed(self.random_state)
        generator = torch.Generator().manual_seed(self.random_state)
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
        network = self._network(X.shape[1])
        optimiser = torch.optim.Adam(
            network.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        inputs, targets = torch.from_numpy(X_fit), torch.from_numpy(y_fit)
        best_loss, best_state, stale = np.inf, None, 0
        self.n_epochs_ = 0
        for _ in range(self.max_epochs):
            network.train()
            order = torch.randperm(len(inputs), generator=generator)
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
        with torch.no_grad():
            logits = self.network_(torch.from_numpy(np.asarray(X, dtype=np.float32)))
        risk = torch.sigmoid(logits.squeeze(1)).double().numpy()
        return np.column_stack([1.0 - risk, risk])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
