"""Single-layer rules of seed 004 (Hebb, Rosenblatt, Widrow-Hoff) against hand-computed weights,
separability (Novikoff / Minsky-Papert) and numpy's least-squares solution."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tamenet.classic import Adaline, Hebb, Perceptron, delta_rule, hebb, hebb_mistake_driven, perceptron, with_bias

BIPOLAR_2 = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]], dtype=float)
BINARY_2 = (BIPOLAR_2 + 1) / 2


@pytest.mark.parametrize(
    ("name", "targets", "weights"),
    [
        # w = sum_k y_k (1, x_k): for AND the bias is 1 - 3 = -2 and each input weight 1 + 1 - 1 + 1 = 2
        ("and", [-1, -1, -1, 1], [-2, 2, 2]),
        ("or", [-1, 1, 1, 1], [2, 2, 2]),
    ],
)
def test_hebb_learns_bipolar_and_or_in_one_pass_with_the_summed_weights(name, targets, weights):
    y = np.array(targets, dtype=float)
    w = hebb(BIPOLAR_2, y)
    np.testing.assert_array_equal(w, weights)
    unit = Hebb()
    assert unit.fit(torch.tensor(BIPOLAR_2), y) == [0]  # torch input accepted
    np.testing.assert_array_equal(unit.predict(BIPOLAR_2), y)
    np.testing.assert_array_equal(hebb(BIPOLAR_2, y, eta=0.5), 0.5 * np.array(weights))


def test_one_pass_hebb_fails_on_three_input_and_where_the_lectures_mistake_driven_rule_succeeds():
    X = np.array(list(itertools.product([-1.0, 1.0], repeat=3)))
    y = np.where(X.min(axis=1) > 0, 1.0, -1.0)  # bipolar AND of three inputs
    w = hebb(X, y)
    np.testing.assert_array_equal(w, [-6, 2, 2, 2])  # net input at (1, 1, 1) is exactly 0: a tie, read as -1
    assert Hebb().fit(X, y) == [1]
    w, mistakes = hebb_mistake_driven(X, y)
    assert mistakes[-1] == 0 and mistakes[0] > 0
    unit = Hebb(mistake_driven=True)
    unit.fit(X, y)
    np.testing.assert_array_equal(unit.predict(X), y)


def test_perceptron_separates_a_linearly_separable_set_and_reports_errors_per_epoch():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(80, 2))
    margin = X @ np.array([1.0, -2.0]) + 0.3
    keep = np.abs(margin) > 0.1  # a clear margin so Novikoff's bound is small
    X, y = X[keep], (margin[keep] > 0).astype(float)
    model = Perceptron(eta=0.5, max_epochs=200)
    errors = model.fit(X, y)
    assert errors[-1] == 0 and errors[0] > 0 and model.converged_
    assert model.epochs_ == len(errors) < 200
    np.testing.assert_array_equal(model.predict(X), y)
    w, errors_fn = perceptron(X, y, eta=0.5, max_epochs=200)
    np.testing.assert_array_equal(w, model.weights_)
    assert errors_fn == errors


def test_perceptron_learns_binary_and_and_never_learns_xor():
    and_unit = Perceptron(max_epochs=50)
    assert and_unit.fit(BINARY_2, [0, 0, 0, 1])[-1] == 0
    np.testing.assert_array_equal(and_unit.predict(BINARY_2), [0, 0, 0, 1])

    xor_unit = Perceptron(max_epochs=500, shuffle=True, seed=1)
    errors = xor_unit.fit(BINARY_2, [0, 1, 1, 0])
    assert len(errors) == 500 and min(errors) > 0 and not xor_unit.converged_
    assert (xor_unit.predict(BINARY_2) != np.array([0, 1, 1, 0])).any()


def test_rosenblatt_update_matches_the_lecture_formula_step_by_step():
    # first sample (0, 0) -> t = 1 with w = 0: a = 0, so w <- 0 + eta (1 - 0) (1, 0, 0)
    w, errors = perceptron(np.array([[0.0, 0.0]]), np.array([1.0]), eta=0.25, max_epochs=1)
    np.testing.assert_array_equal(w, [0.25, 0.0, 0.0])
    assert errors == [1]


def _regression_problem() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    t = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.1 * rng.normal(size=60)
    least_squares = np.linalg.lstsq(with_bias(X), t, rcond=None)[0]
    return X, t, least_squares


def test_batch_delta_rule_converges_to_numpys_least_squares_solution():
    X, t, least_squares = _regression_problem()
    model = Adaline(eta=0.5, mode="batch", max_epochs=5000)
    mse = model.fit(X, t)
    np.testing.assert_allclose(model.weights_, least_squares, atol=1e-9)
    assert len(mse) < 5000 and all(a >= b - 1e-12 for a, b in zip(mse, mse[1:]))  # stopped on tol; monotone descent
    np.testing.assert_allclose(model.predict(X), with_bias(X) @ least_squares, atol=1e-8)


def test_online_lms_ends_within_order_eta_of_least_squares():
    X, t, least_squares = _regression_problem()
    distance = []
    for eta in (0.02, 0.005):
        w, _ = delta_rule(X, t, eta=eta, max_epochs=300, seed=0)
        distance.append(np.abs(w - least_squares).max())
    assert distance[1] < 2e-3
    assert distance[1] < distance[0] / 2  # a smaller step lands closer: the O(eta) LMS misadjustment


def test_adaline_classifies_with_the_sign_of_its_linear_output():
    y = np.array([-1.0, -1.0, -1.0, 1.0])
    model = Adaline(eta=0.1, mode="batch", max_epochs=2000)
    model.fit(BIPOLAR_2, y)
    np.testing.assert_allclose(model.weights_, [-0.5, 0.5, 0.5], atol=1e-9)  # least squares for bipolar AND
    np.testing.assert_array_equal(model.classify(BIPOLAR_2), y)


def test_user_mistakes_raise_with_expected_and_received():
    with pytest.raises(ValueError, match=r"expected targets in"):
        Perceptron().fit(BINARY_2, [0, 1, 2, 0])
    with pytest.raises(ValueError, match=r"expected targets in"):
        hebb(BIPOLAR_2, [0, 1, 1, 1])
    with pytest.raises(ValueError, match=r"bipolar inputs"):
        hebb(BINARY_2, [-1, 1, 1, 1])
    with pytest.raises(ValueError, match=r"same number of samples"):
        perceptron(BINARY_2, [0, 1])
    with pytest.raises(ValueError, match=r"2-D array"):
        perceptron([0.0, 1.0], [0, 1])
    with pytest.raises(ValueError, match=r"eta: expected a positive"):
        Adaline(eta=0.0)
    with pytest.raises(ValueError, match=r"eta: expected eta < 2 / lambda_max"):
        delta_rule(BIPOLAR_2, [0.0, 1.0, 1.0, 2.0], eta=10.0, mode="batch")
    with pytest.raises(ValueError, match=r"mode: expected 'online' or 'batch'"):
        delta_rule(BIPOLAR_2, [0.0, 1.0, 1.0, 2.0], mode="stochastic")
    with pytest.raises(ValueError, match=r"call fit first"):
        Perceptron().predict(BINARY_2)
    unit = Perceptron()
    unit.fit(BINARY_2, [0, 0, 0, 1])
    with pytest.raises(ValueError, match=r"expected 2 features"):
        unit.predict(np.ones((2, 3)))
