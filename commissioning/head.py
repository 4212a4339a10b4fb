"""The site head: logistic regression on the model's pooled features, pulled towards the shipped head.

The penalty is on the distance from the shipped weights, not from zero, so with few cases the site head stays
close to the model that was cross-validated on thousands of slices, and moves only as far as the site's own
cases justify. Classes are weighed equally, whatever the case mix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit

PULLS = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003)
"""Penalty strengths tried, strongest first: chosen per site by grouped cross-validation."""


@dataclass(frozen=True)
class Head:
    """logit = features @ weights + bias."""

    weights: np.ndarray
    bias: float

    def logits(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features, dtype=np.float64) @ self.weights + self.bias


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Sample weights giving both classes the same total weight."""
    labels = np.asarray(labels, dtype=bool)
    weights = np.empty(len(labels))
    for value in (True, False):
        count = int((labels == value).sum())
        weights[labels == value] = 0.5 / count if count else 0.0
    return weights


def fit_head(
    features: np.ndarray, labels: np.ndarray, prior: Head, pull: float, balanced: bool = True,
    start: Head | None = None,
) -> Head:
    """Minimise the log loss (classes weighed equally when `balanced`) plus `pull`/2 times the squared distance
    from the prior's weights (the bias is free), starting from `start` (default: the prior)."""
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    sample = balanced_weights(labels) if balanced else np.full(len(y), 1 / len(y))

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        weights, bias = params[:-1], params[-1]
        z = x @ weights + bias
        value = -float(sample @ (y * log_expit(z) + (1 - y) * log_expit(-z)))
        residual = sample * (expit(z) - y)
        shift = weights - prior.weights
        value += 0.5 * pull * float(shift @ shift)
        gradient = np.append(x.T @ residual + pull * shift, residual.sum())
        return value, gradient

    first = start or prior
    result = minimize(loss, np.append(first.weights, first.bias), jac=True, method="L-BFGS-B",
                      options={"maxiter": 300, "gtol": 1e-4})
    return Head(result.x[:-1].copy(), float(result.x[-1]))


def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Calibration `sigmoid(slope * logit + intercept)` fitted on held-out logits at the cases' own mix of
    classes: (slope, intercept)."""
    column = np.asarray(logits, dtype=np.float64).reshape(-1, 1)
    head = fit_head(column, labels, Head(np.ones(1), 0.0), 1e-6, balanced=False)
    return float(head.weights[0]), head.bias
