"""Tests of ``clip.evaluation``: metrics on hand-computed cases, the logistic regression
(SciPy's L-BFGS-B) against scikit-learn's, the linear-probe protocol and image-text retrieval
recall."""
import math
import warnings

import mindspore
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression as SkLogisticRegression

from clip import evaluation
from clip.evaluation import (ConvergenceWarning, LogisticRegression, classification_report,
                             confusion_matrix, linear_probe, mean_per_class_recall,
                             retrieval_recall, topk_accuracy, zero_shot_evaluate)


# ----------------------------------------------------------------------------------------
# top-k accuracy
# ----------------------------------------------------------------------------------------

# hand-ranked: row 0 orders classes 1, 2, 0; row 1: 0 first; row 2: 2, 1, 0;
# row 3: 2, then 0 and 1 tied at 0.3 -> 0 before 1.
LOGITS = np.array([[0.1, 0.5, 0.4],
                   [0.9, 0.05, 0.05],
                   [0.2, 0.3, 0.5],
                   [0.3, 0.3, 0.4]])
LABELS = np.array([2, 0, 0, 1])            # label ranks: 1, 0, 2, 2


def test_topk_hand_computed():
    acc = topk_accuracy(LOGITS, LABELS, ks=(1, 2, 3))
    assert acc == {1: 0.25, 2: 0.5, 3: 1.0}


def test_topk_k_larger_than_classes_is_clamped():
    acc = topk_accuracy(LOGITS, LABELS, ks=(1, 5, 100))
    assert acc[5] == 1.0 and acc[100] == 1.0 and acc[1] == 0.25
    assert list(acc) == [1, 5, 100]  # keyed by the k that was asked for
    assert topk_accuracy(LOGITS, LABELS, ks=2) == {2: 0.5}


def test_topk_ties_lower_class_index_first():
    tied = np.ones((3, 3))
    # all three classes tie: the order is 0, 1, 2
    assert topk_accuracy(tied, [0, 1, 2], ks=(1, 2, 3)) == {1: 1 / 3, 2: 2 / 3, 3: 1.0}
    assert topk_accuracy(tied, [2, 2, 2], ks=(1, 2, 3)) == {1: 0.0, 2: 0.0, 3: 1.0}
    # a tie below the top: [5, 1, 1] ranks 0, 1, 2
    assert topk_accuracy([[5.0, 1.0, 1.0]], [2], ks=(2, 3)) == {2: 0.0, 3: 1.0}
    assert topk_accuracy([[5.0, 1.0, 1.0]], [1], ks=(2,)) == {2: 1.0}


def test_topk_matches_stable_argsort_on_many_ties():
    rng = np.random.default_rng(0)
    logits = rng.integers(0, 4, size=(500, 7)).astype(np.float32)   # lots of ties
    labels = rng.integers(0, 7, size=500)
    order = np.argsort(-logits, axis=1, kind="stable")
    got = topk_accuracy(logits, labels, ks=(1, 2, 3, 5, 7))
    for k, value in got.items():
        expected = np.mean([labels[i] in order[i, :k] for i in range(500)])
        assert value == pytest.approx(expected, abs=0)


def test_topk_perfect_and_zero():
    logits = np.eye(4) * 3
    assert topk_accuracy(logits, [0, 1, 2, 3], ks=(1, 5)) == {1: 1.0, 5: 1.0}
    assert topk_accuracy(logits, [1, 2, 3, 0], ks=(1,)) == {1: 0.0}


def test_topk_accepts_mindspore_tensors():
    acc = topk_accuracy(mindspore.Tensor(LOGITS.astype(np.float32)),
                        mindspore.Tensor(LABELS.astype(np.int32)), ks=(1, 2))
    assert acc == {1: 0.25, 2: 0.5}


@pytest.mark.parametrize("logits, labels, ks, message", [
    (np.zeros((2, 3)), [0, 3], (1,), "< the number of classes"),
    (np.zeros((2, 3)), [0], (1,), "1 entries but the scores have 2 rows"),
    (np.zeros((2, 3)), [0, -1], (1,), ">= 0"),
    (np.zeros((2, 3)), [0, 1], (0,), "positive ints"),
    (np.zeros((2, 3)), [0.5, 1], (1,), "whole numbers"),
    (np.array([[0.0, np.nan]]), [0], (1,), "NaN"),
    (np.zeros(3), [0], (1,), "must be 2-D"),
])
def test_topk_errors(logits, labels, ks, message):
    with pytest.raises(ValueError, match=message):
        topk_accuracy(logits, labels, ks)


# ----------------------------------------------------------------------------------------
# per-class metrics
# ----------------------------------------------------------------------------------------

def test_mean_per_class_recall_excludes_absent_classes():
    labels = [0, 0, 0, 1, 2, 2]
    preds = [0, 0, 1, 1, 0, 2]
    # recalls: class 0 2/3, class 1 1/1, class 2 1/2; class 3 never occurs -> not averaged
    expected = (2 / 3 + 1 + 1 / 2) / 3
    assert mean_per_class_recall(preds, labels, num_classes=4) == pytest.approx(expected)
    assert mean_per_class_recall(preds, labels) == pytest.approx(expected)
    # plain accuracy would be 4/6 = 0.667, not 0.722: the classes weigh equally
    assert mean_per_class_recall(preds, labels) != pytest.approx(4 / 6)


def test_mean_per_class_recall_from_logits_ties_take_lowest_class():
    logits = np.array([[1.0, 1.0, 0.0],    # tie 0/1 -> predicts 0
                       [0.0, 2.0, 2.0],    # tie 1/2 -> predicts 1
                       [0.0, 0.0, 3.0]])
    # labels 0, 2, 2: class 0 recall 1, class 2 recall 1/2
    assert mean_per_class_recall(logits, [0, 2, 2]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="num_classes=4 but"):
        mean_per_class_recall(logits, [0, 2, 2], num_classes=4)
    with pytest.raises(ValueError, match="num_classes"):
        mean_per_class_recall([0, 5], [0, 1], num_classes=3)


def test_confusion_matrix_and_report():
    labels = [0, 0, 0, 1, 2, 2]
    preds = [0, 0, 1, 1, 0, 2]
    cm = confusion_matrix(preds, labels, num_classes=4)
    expected = np.array([[2, 1, 0, 0],
                         [0, 1, 0, 0],
                         [1, 0, 1, 0],
                         [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm, expected)
    assert cm.dtype == np.int64

    report = classification_report(preds, labels, classnames=["cat", "dog", "eel", "fox"])
    # cat: predicted 3 times, 2 right; dog: predicted twice, 1 right; eel: 1 of 1
    assert report["cat"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3,
                                           "f1": 2 / 3, "support": 3})
    assert report["dog"] == pytest.approx({"precision": 0.5, "recall": 1.0,
                                           "f1": 2 * 0.5 / 1.5, "support": 1})
    assert report["eel"] == pytest.approx({"precision": 1.0, "recall": 0.5,
                                           "f1": 2 * 0.5 / 1.5, "support": 2})
    assert report["fox"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["mean_per_class_recall"] == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert report["macro avg"]["precision"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    with pytest.raises(ValueError, match="3 classnames"):
        classification_report(preds, labels, classnames=["a", "b", "c"], num_classes=4)


# ----------------------------------------------------------------------------------------
# zero-shot
# ----------------------------------------------------------------------------------------

def test_zero_shot_evaluate_hand_computed():
    # classifier columns = class embeddings e0, e1, e2 (D = 3, C = 3)
    classifier = np.eye(3)
    features = np.array([[5.0, 1.0, 0.0],     # -> class 0; order 0, 1, 2
                         [0.0, 0.2, 0.1],     # -> class 1; order 1, 2, 0
                         [1.0, 1.0, 3.0],     # -> class 2; order 2, 0, 1 (tie: 0 first)
                         [3.0, 0.0, 2.0]])    # -> class 0; order 0, 2, 1
    labels = [0, 2, 1, 1]
    # ranks of the labels: 0, 1, 2, 2
    result = zero_shot_evaluate(features, labels, classifier, ks=(1, 2, 5))
    assert result["top1"] == pytest.approx(0.25)
    assert result["top2"] == pytest.approx(0.5)
    assert result["top5"] == 1.0
    # recalls: class 0 1/1, class 1 0/2, class 2 0/1
    assert result["mean_per_class_recall"] == pytest.approx(1 / 3)
    assert set(result) == {"top1", "top2", "top5", "mean_per_class_recall"}


def test_zero_shot_evaluate_normalises_features_and_accepts_tensors():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(50, 8)).astype(np.float32)
    W = rng.normal(size=(8, 6)).astype(np.float32)
    labels = rng.integers(0, 6, size=50)
    logits = 100 * (feats / np.linalg.norm(feats, axis=1, keepdims=True)) @ W
    expected = topk_accuracy(logits, labels, (1, 5))
    scaled = feats * rng.uniform(0.1, 10, size=(50, 1)).astype(np.float32)
    result = zero_shot_evaluate(mindspore.Tensor(scaled), mindspore.Tensor(labels.astype(np.int32)),
                                mindspore.Tensor(W))
    assert result["top1"] == pytest.approx(expected[1])
    assert result["top5"] == pytest.approx(expected[5])
    assert result["mean_per_class_recall"] == pytest.approx(mean_per_class_recall(logits, labels))


def test_zero_shot_evaluate_errors():
    with pytest.raises(ValueError, match=r"dimension 4 but the classifier expects 3"):
        zero_shot_evaluate(np.ones((2, 4)), [0, 1], np.ones((3, 2)))
    with pytest.raises(ValueError, match="all-zero"):
        zero_shot_evaluate(np.zeros((2, 3)), [0, 1], np.ones((3, 2)))
    with pytest.raises(ValueError, match="< the number of classes"):
        zero_shot_evaluate(np.ones((2, 3)), [0, 2], np.ones((3, 2)))


# ----------------------------------------------------------------------------------------
# logistic regression vs scikit-learn
# ----------------------------------------------------------------------------------------

def blobs(n, k, d, spread, seed):
    """``n`` points around ``k`` Gaussian centres in ``d`` dims; larger spread = more overlap."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 3.0
    y = rng.integers(0, k, size=n)
    return centers[y] + spread * rng.normal(size=(n, d)), y


def test_logistic_regression_hand_computed_1d():
    # X = [-1, 1], y = [0, 1], C = 1, N = 2: by symmetry b = 0 and w minimises
    # log(1 + e^-w) + w^2 / 4, i.e. w / 2 = sigmoid(-w). Solve by bisection.
    lo, hi = 0.0, 2.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if mid / 2 - 1 / (1 + math.exp(mid)) > 0:
            hi = mid
        else:
            lo = mid
    clf = LogisticRegression(C=1.0, tol=1e-10).fit([[-1.0], [1.0]], [0, 1])
    assert clf.coef_.shape == (1, 1) and clf.intercept_.shape == (1,)
    assert clf.coef_[0, 0] == pytest.approx(lo, abs=1e-8)
    assert clf.intercept_[0] == pytest.approx(0.0, abs=1e-8)
    p = 1 / (1 + math.exp(-lo))
    np.testing.assert_allclose(clf.predict_proba([[1.0], [-1.0]]), [[1 - p, p], [p, 1 - p]],
                               atol=1e-8)


def _assert_same_fit(ours, ref, X):
    """``ours`` and scikit-learn's ``ref`` agree: probabilities on ``X`` within 1e-4 relative.

    Coefficient tolerances follow from that budget. ``log p_k`` moves by at most twice the
    largest change of a logit ``x @ w_k + b_k``, and a logit moves by at most
    ``max_i ||x_i||_1 * max|dW| + max|db|``. Allowing 1/4 of 1e-4 for each term keeps every
    probability within ``exp(1e-4) - 1 ~ 1e-4`` relative, whatever the size of the weights
    (on separable data that size is set by C alone). scikit-learn's multinomial intercepts are
    compared after shifting them to sum to zero, as ours are (softmax ignores the shift).
    """
    budget = 1e-4 / 4
    coef_atol = budget / np.abs(X).sum(axis=1).max()
    ref_intercept = ref.intercept_ - (ref.intercept_.mean() if ref.intercept_.size > 2 else 0)
    assert ours.coef_.shape == ref.coef_.shape and ours.intercept_.shape == ref.intercept_.shape
    np.testing.assert_allclose(ours.coef_, ref.coef_, rtol=0, atol=coef_atol)
    np.testing.assert_allclose(ours.intercept_, ref_intercept, rtol=0, atol=budget)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=1e-4, atol=0)


@pytest.mark.parametrize("k, spread, C", [
    (2, 0.5, 1.0),      # separable, binary
    (2, 4.0, 0.1),      # overlapping, binary
    (4, 0.5, 1.0),      # separable, multinomial
    (4, 0.5, 100.0),    # separable, weak regularisation: weights grow with C
    (5, 4.0, 1.0),      # overlapping (noisy), multinomial
    (8, 5.0, 10.0),     # heavily overlapping, weak regularisation
    (6, 3.0, 1e-3),     # strong regularisation
    (20, 2.0, 1.0),     # many classes
])
def test_logistic_regression_matches_sklearn(k, spread, C):
    X, y = blobs(900, k, 16, spread, seed=k)
    X_train, y_train, X_test, y_test = X[:600], y[:600], X[600:], y[600:]
    ours = LogisticRegression(C=C, max_iter=1000).fit(X_train, y_train)
    ref = SkLogisticRegression(C=C, max_iter=1000).fit(X_train, y_train)
    assert ours.converged_
    _assert_same_fit(ours, ref, X_test)
    np.testing.assert_array_equal(ours.predict(X_test), ref.predict(X_test))
    assert ours.score(X_test, y_test) == ref.score(X_test, y_test)
    # the comparison is sharp enough to see a 1% error in C
    wrong_C = SkLogisticRegression(C=1.01 * C, max_iter=1000).fit(X_train, y_train)
    with pytest.raises(AssertionError):
        _assert_same_fit(ours, wrong_C, X_test)


def test_logistic_regression_separable_weights_are_set_by_C():
    # separable classes have no finite unregularised optimum: the weights grow with C, and
    # at every C they are scikit-learn's
    X, y = blobs(400, 4, 16, 0.5, seed=4)
    norms = []
    for C in (0.01, 1.0, 100.0):
        ours = LogisticRegression(C=C, max_iter=1000).fit(X, y)
        assert ours.score(X, y) == 1.0
        _assert_same_fit(ours, SkLogisticRegression(C=C, max_iter=1000).fit(X, y), X)
        norms.append(np.linalg.norm(ours.coef_))
    assert norms[0] < norms[1] < norms[2]


def _objective(clf, X, y, C):
    """scikit-learn's objective: mean log-loss + ||coef||^2 / (2 C N)."""
    p = clf.predict_proba(X)[np.arange(len(y)), np.searchsorted(clf.classes_, y)]
    return -np.mean(np.log(p)) + np.sum(clf.coef_ ** 2) / (2 * C * len(y))


@pytest.mark.parametrize("k", [2, 5])
def test_logistic_regression_same_optimum_as_sklearn_at_tight_tolerance(k):
    X, y = blobs(400, k, 10, 3.0, seed=10 + k)
    ours = LogisticRegression(C=0.5, max_iter=5000, tol=1e-9).fit(X, y)
    ref = SkLogisticRegression(C=0.5, max_iter=5000, tol=1e-9).fit(X, y)
    # same objective, and ours gets at least as low as scikit-learn's L-BFGS-B
    assert _objective(ours, X, y, 0.5) <= _objective(ref, X, y, 0.5) + 1e-12
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=1e-4)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-3 * np.abs(ref.coef_).max())
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))


def test_logistic_regression_label_values_and_api():
    X, y = blobs(300, 3, 5, 0.5, seed=3)
    names = np.array([7, 11, 42])[y]
    clf = LogisticRegression(C=1.0).fit(X, names)
    np.testing.assert_array_equal(clf.classes_, [7, 11, 42])
    assert set(np.unique(clf.predict(X))) <= {7, 11, 42}
    assert clf.score(X, names) == 1.0
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], clf.predict(X))
    assert clf.decision_function(X).shape == (300, 3)
    assert clf.intercept_.sum() == pytest.approx(0.0, abs=1e-9)
    # deterministic
    again = LogisticRegression(C=1.0).fit(X, names)
    np.testing.assert_array_equal(again.coef_, clf.coef_)


def test_logistic_regression_errors_and_warning():
    with pytest.raises(ValueError, match="at least 2 classes"):
        LogisticRegression().fit(np.ones((3, 2)), [1, 1, 1])
    with pytest.raises(ValueError, match="C must be a positive"):
        LogisticRegression(C=0)
    with pytest.raises(RuntimeError, match="not fitted"):
        LogisticRegression().predict(np.ones((1, 2)))
    clf = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0]], [0, 1])
    with pytest.raises(ValueError, match="3 features but the model was fitted on 2"):
        clf.predict(np.ones((1, 3)))
    X, y = blobs(200, 3, 4, 3.0, seed=0)
    with pytest.warns(ConvergenceWarning, match="did not converge in 2 iterations"):
        stopped = LogisticRegression(C=100.0, max_iter=2).fit(X, y)
    assert stopped.n_iter_ == 2 and stopped.converged_ is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        done = LogisticRegression(C=100.0).fit(X, y)
    assert done.converged_ is True and 2 < done.n_iter_ < 1000


@pytest.mark.parametrize("status, converged", [(0, True), (1, False), (2, True)])
def test_logistic_regression_convergence_follows_scipy_status(monkeypatch, status, converged):
    # SciPy's L-BFGS-B: 0 = converged, 1 = iteration limit, 2 = the line search found no
    # lower point (optimal to working precision). Only 1 is a failure to converge.
    import scipy.optimize

    def fake_minimize(fun, x0, method, jac, options):
        assert method == "L-BFGS-B" and jac is True and options["maxiter"] == 7
        return scipy.optimize.OptimizeResult(x=np.zeros_like(x0), nit=7, status=status,
                                             success=status == 0)

    monkeypatch.setattr(scipy.optimize, "minimize", fake_minimize)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = LogisticRegression(max_iter=7).fit([[0.0], [1.0]], [0, 1])
    assert clf.converged_ is converged and clf.n_iter_ == 7
    assert [w.category for w in caught] == ([] if converged else [ConvergenceWarning])


# ----------------------------------------------------------------------------------------
# linear probe
# ----------------------------------------------------------------------------------------

def _replay_search(sweep):
    """Check the sweep follows the documented search: 7 start values, then the neighbours of
    the best value so far at steps of 8, 4, 2, 1 eighths of a decade."""
    exps = [round(8 * math.log10(e["C"])) for e in sweep]
    for e, entry in zip(exps, sweep):
        assert entry["C"] == pytest.approx(10 ** (e / 8), rel=1e-12)
    assert exps[:7] == [-48, -32, -16, 0, 16, 32, 48]
    scores = dict(zip(exps, (e["val_score"] for e in sweep)))
    position = 7
    for step in (8, 4, 2, 1):
        seen = set(exps[:position])
        best = max(seen, key=lambda e: (scores[e], -e))
        expected = [e for e in (best - step, best + step) if -48 <= e <= 48 and e not in seen]
        assert exps[position:position + len(expected)] == expected
        position += len(expected)
    assert position == len(exps) <= 15
    return max(exps, key=lambda e: (scores[e], -e))


def test_linear_probe_follows_the_protocol_and_picks_a_sensible_C():
    X, y = blobs(500, 4, 12, 3.5, seed=5)
    result = linear_probe(X[:350], y[:350], X[350:], y[350:])
    best_e = _replay_search(result["sweep"])
    assert result["C"] == pytest.approx(10 ** (best_e / 8))
    # the choice recorded with the earlier hand-written L-BFGS solver, unchanged with SciPy's:
    # C = 10 ** (-1/8), the smallest of the C values tied at 64/71 validation accuracy
    assert best_e == -1 and result["val_accuracy"] == pytest.approx(64 / 71)
    assert [round(8 * math.log10(e["C"])) for e in result["sweep"]] == [
        -48, -32, -16, 0, 16, 32, 48, -8, 8, -4, 4, -2, 2, -1, 1]
    # C = 1e-6 squeezes every weight to ~0: near-chance; the chosen C must do far better
    tiny = next(e for e in result["sweep"] if e["C"] == pytest.approx(1e-6))
    assert tiny["val_accuracy"] < 0.5
    assert result["C"] > 1e-3
    assert result["val_accuracy"] == max(e["val_accuracy"] for e in result["sweep"])
    # the final classifier is retrained on the whole training set with the chosen C
    ref = SkLogisticRegression(C=result["C"], max_iter=1000).fit(X[:350], y[:350])
    assert abs(result["test_top1"] - ref.score(X[350:], y[350:])) <= 0.01
    assert result["test_top1"] > 0.8
    assert result["test_top5"] == 1.0  # 4 classes: top-5 clamps to 4
    assert result["classifier"].coef_.shape == (4, 12)
    assert 0 < result["mean_per_class_recall"] <= 1


def test_linear_probe_prefers_strong_regularisation_when_features_are_noise():
    # labels independent of 40 noisy features, 60 samples: fitting the noise cannot help,
    # and ties in validation accuracy go to the smaller C
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 40))
    y = np.tile([0, 1], 60)
    result = linear_probe(X[:60], y[:60], X[60:], y[60:])
    scores = [e["val_score"] for e in result["sweep"]]
    best = [e["C"] for e in result["sweep"] if e["val_score"] == max(scores)]
    assert result["C"] == min(best)
    assert result["C"] == 1e-6  # as recorded with the earlier hand-written solver


def test_linear_probe_is_deterministic_and_seeded():
    X, y = blobs(300, 3, 8, 4.0, seed=9)
    a = linear_probe(X[:200], y[:200], X[200:], y[200:], seed=3)
    b = linear_probe(X[:200], y[:200], X[200:], y[200:], seed=3)
    assert a["C"] == b["C"] and a["test_top1"] == b["test_top1"]
    # the choice recorded with the earlier hand-written solver: C = 10 ** (-31/8) ~ 1.3e-4
    assert a["C"] == pytest.approx(10 ** (-31 / 8), rel=1e-12)
    np.testing.assert_array_equal(a["classifier"].coef_, b["classifier"].coef_)
    assert [e["C"] for e in a["sweep"]] == [e["C"] for e in b["sweep"]]


def test_linear_probe_stratified_split():
    y = np.array([0] * 10 + [1] * 5 + [2] * 1)
    train, val = evaluation._stratified_split(y, 0.2, seed=0)
    assert np.bincount(y[val], minlength=3).tolist() == [2, 1, 0]
    assert np.bincount(y[train], minlength=3).tolist() == [8, 4, 1]
    assert np.intersect1d(train, val).size == 0 and train.size + val.size == y.size


def test_linear_probe_explicit_C_and_validation_set():
    X, y = blobs(400, 3, 6, 2.0, seed=2)
    single = linear_probe(X[:300], y[:300], X[300:], y[300:], C_values=[0.316])
    assert single["C"] == 0.316 and single["val_accuracy"] is None and single["sweep"] == []
    ref = SkLogisticRegression(C=0.316, max_iter=1000).fit(X[:300], y[:300])
    assert abs(single["test_top1"] - ref.score(X[300:], y[300:])) <= 0.01

    listed = linear_probe(X[:200], y[:200], X[300:], y[300:], val_features=X[200:300],
                          val_labels=y[200:300], C_values=[1e-5, 1.0, 1e-5])
    assert [e["C"] for e in listed["sweep"]] == [1e-5, 1.0]
    assert listed["C"] == 1.0
    # retrained on train + validation
    assert listed["classifier"].n_iter_ > 0
    ref = SkLogisticRegression(C=1.0, max_iter=1000).fit(X[:300], y[:300])
    agreement = np.mean(listed["classifier"].predict(X[300:]) == ref.predict(X[300:]))
    assert agreement >= 0.99

    with pytest.raises(ValueError, match="both val_features and val_labels"):
        linear_probe(X, y, X, y, val_features=X)
    with pytest.raises(ValueError, match="metric"):
        linear_probe(X, y, X, y, metric="f1")
    with pytest.raises(ValueError, match="C_values"):
        linear_probe(X, y, X, y, C_values=[-1.0])


def test_linear_probe_test_class_unseen_in_training_counts_as_miss():
    X = np.array([[0.0], [0.1], [5.0], [5.1], [9.0]])
    y = np.array([0, 0, 1, 1, 2])
    result = linear_probe(X[:4], y[:4], X, y, C_values=[10.0], ks=(1, 2))
    # samples of classes 0 and 1 are right; class 2 was never trained: miss at every k
    assert result["test_top1"] == pytest.approx(4 / 5)
    assert result["test_top2"] == pytest.approx(4 / 5)
    assert result["mean_per_class_recall"] == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------------------
# retrieval
# ----------------------------------------------------------------------------------------

# similarity S[image, caption] built by hand; captions 0, 1 describe image 0, caption 2
# image 1, captions 3, 4 image 2.
SIM = np.array([[0.1, 0.4, 0.2, 0.5, 0.35],
                [0.5, 0.3, 0.6, 0.1, 0.2],
                [0.2, 0.1, 0.4, 0.3, 0.35]])
TEXT_TO_IMAGE = np.array([0, 0, 1, 2, 2])


def _features_for(sim):
    """Unit image features e_i and unit text features whose dot products are exactly ``sim``."""
    n_img, n_txt = sim.shape
    images = np.eye(n_img, n_img + 1)
    texts = np.zeros((n_txt, n_img + 1))
    texts[:, :n_img] = sim.T
    texts[:, n_img] = np.sqrt(1 - np.sum(sim.T ** 2, axis=1))
    return images, texts


def test_retrieval_recall_hand_computed():
    images, texts = _features_for(SIM)
    # text->image ranks of each caption's image: 2, 0, 0, 1, 1 (caption 4: images 0 and 2
    # tie at 0.35, image 0 first). image->text: image 0's best caption is 1 at rank 1
    # (behind caption 3), image 1's caption 2 is first, image 2's best is caption 4 at rank 1.
    expected = {"image_to_text_R@1": 1 / 3, "text_to_image_R@1": 2 / 5,
                "image_to_text_R@2": 1.0, "text_to_image_R@2": 4 / 5,
                "image_to_text_R@3": 1.0, "text_to_image_R@3": 1.0,
                "image_to_text_R@10": 1.0, "text_to_image_R@10": 1.0}
    got = retrieval_recall(images, texts, TEXT_TO_IMAGE, ks=(1, 2, 3, 10))
    assert got == pytest.approx(expected)
    # features are normalised inside: rescaling rows changes nothing
    scaled = retrieval_recall(images * np.array([[1.0], [10.0], [2.0]]),
                              texts * np.array([[3.0], [0.5], [1.0], [7.0], [2.0]]),
                              TEXT_TO_IMAGE, ks=(1, 2, 3, 10), chunk_size=2)
    assert scaled == pytest.approx(expected)
    default = retrieval_recall(images, texts, TEXT_TO_IMAGE)
    assert set(default) == {f"{d}_R@{k}" for d in ("image_to_text", "text_to_image")
                            for k in (1, 5, 10)}


def test_retrieval_recall_ties_lower_index_first():
    images = np.eye(2)
    texts = np.ones((2, 2))          # identical captions: every similarity ties
    # caption 0 belongs to image 1, caption 1 to image 0
    got = retrieval_recall(images, texts, [1, 0], ks=(1, 2))
    # image 0: captions ordered 0, 1 -> its caption 1 is second; image 1: caption 0 first.
    # caption 0: images ordered 0, 1 -> its image 1 second; caption 1: image 0 first.
    assert got == {"image_to_text_R@1": 0.5, "text_to_image_R@1": 0.5,
                   "image_to_text_R@2": 1.0, "text_to_image_R@2": 1.0}


def test_retrieval_recall_matches_brute_force():
    rng = np.random.default_rng(4)
    images = rng.normal(size=(30, 6))
    t2i = np.concatenate([np.arange(25), rng.integers(0, 25, size=40)])  # 5 images uncaptioned
    texts = images[t2i] + 1.5 * rng.normal(size=(t2i.size, 6))
    got = retrieval_recall(images, texts, t2i, ks=(1, 3, 5), chunk_size=7)
    i_n = images / np.linalg.norm(images, axis=1, keepdims=True)
    t_n = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    sim = i_n @ t_n.T
    for k in (1, 3, 5):
        t_order = np.argsort(-sim.T, axis=1, kind="stable")[:, :k]
        t_hits = [t2i[t] in t_order[t] for t in range(t2i.size)]
        i_order = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        i_hits = [np.any(t2i[i_order[i]] == i) for i in range(25)]
        assert got[f"text_to_image_R@{k}"] == pytest.approx(np.mean(t_hits))
        assert got[f"image_to_text_R@{k}"] == pytest.approx(np.mean(i_hits))


def test_retrieval_recall_errors():
    with pytest.raises(ValueError, match="< the number of classes"):
        retrieval_recall(np.ones((2, 3)), np.ones((2, 3)), [0, 2])
    with pytest.raises(ValueError, match="dimension 3 but text_features 4"):
        retrieval_recall(np.ones((2, 3)), np.ones((2, 4)), [0, 1])
    with pytest.raises(ValueError, match="3 entries but the scores have 2 rows"):
        retrieval_recall(np.ones((2, 3)), np.ones((2, 3)), [0, 1, 1])


def test_no_warnings_from_metrics():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        topk_accuracy(LOGITS, LABELS)
        mean_per_class_recall(LOGITS, LABELS)
        images, texts = _features_for(SIM)
        retrieval_recall(images, texts, TEXT_TO_IMAGE)
