"""Evaluation of CLIP features: classification metrics, zero-shot accuracy, linear probes
and image-text retrieval.

Everything here works on NumPy arrays (``mindspore.Tensor`` inputs are converted with
``asnumpy()``) and returns NumPy arrays or Python floats, so the functions can be used on
features computed by any model.

Conventions shared by every function of this module:

* scores come first, labels second: ``f(logits_or_predictions, labels)``;
* ``logits`` are ``[N, C]`` scores (higher is better), ``labels`` are ``[N]`` integer class
  indices in ``[0, C)``;
* **ties** are broken by class index, the lower index ranking first. This is the order
  ``numpy.argsort(-logits, axis=1, kind="stable")`` gives and the class ``numpy.argmax``
  picks. A sample is a top-k hit when its label is among the first ``k`` classes of that
  order: with ``logits = [1, 1, 1]`` and label ``2`` it is a miss at top-1 and top-2 and a
  hit at top-3. The same rule orders texts and images in :func:`retrieval_recall`.
* a ``k`` larger than the number of classes (or candidates) is clamped to it, so it always
  counts as a hit; results are still keyed by the ``k`` that was asked for.

Linear probe
------------
:class:`LogisticRegression` is a NumPy/SciPy implementation of the L2-regularised multinomial
logistic regression of scikit-learn's ``LogisticRegression(C=C, solver="lbfgs")`` (the
classifier OpenAI used for the linear probes of the CLIP paper), so that scikit-learn is not a
dependency of this package. It minimises the same objective::

    (1 / N) * sum_i -log softmax(x_i @ W + b)[y_i]  +  ||W||^2 / (2 * C * N)

(the intercept ``b`` is not penalised) with the same two-class special case as scikit-learn
(a single weight vector and a sigmoid). The objective and its gradient are computed with
NumPy; the solver is ``scipy.optimize.minimize(..., method="L-BFGS-B", jac=True)`` with
scikit-learn's settings (SciPy is installed with MindSpore). The test-suite checks its
coefficients and probabilities against scikit-learn's.

:func:`linear_probe` follows the protocol of the CLIP paper (appendix A.3): the inverse
regularisation strength ``C`` is chosen on a validation split of the training set by a
parametric binary search over ``[1e-6, 1e6]`` (see :func:`linear_probe` for the exact
procedure), then the classifier is retrained on the whole training set and evaluated once on
the test set.
"""
import math
import numbers
import warnings

import numpy as np

__all__ = [
    "topk_accuracy",
    "mean_per_class_recall",
    "confusion_matrix",
    "classification_report",
    "zero_shot_evaluate",
    "LogisticRegression",
    "ConvergenceWarning",
    "linear_probe",
    "retrieval_recall",
]

_EPS = np.finfo(np.float64).eps


# --------------------------------------------------------------------------------------
# input checking
# --------------------------------------------------------------------------------------

def _to_numpy(x, name):
    """``x`` as a NumPy array; ``mindspore.Tensor`` (or anything with ``asnumpy``) accepted."""
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    if hasattr(x, "asnumpy"):
        x = x.asnumpy()
    return np.asarray(x)


def _check_scores(x, name, ndim=2):
    """Float64 ``[N, C]`` array of finite scores."""
    x = _to_numpy(x, name)
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
            or x.dtype == np.bool_):
        raise TypeError(f"{name} must hold numbers, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)})")
    if ndim == 2 and x.shape[1] == 0:
        raise ValueError(f"{name} has no columns (shape {tuple(x.shape)})")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _check_labels(labels, n, name="labels", num_classes=None):
    """int64 ``[n]`` array of class indices (in ``[0, num_classes)`` when that is given)."""
    y = _to_numpy(labels, name)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(y.shape)}")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} entries but the scores have {n} rows")
    if y.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError(f"{name} must hold whole numbers (class indices)")
    elif not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if np.any(y < 0):
        raise ValueError(f"{name} must be >= 0, found {int(y.min())}")
    if num_classes is not None and np.any(y >= num_classes):
        raise ValueError(f"{name} must be < the number of classes ({num_classes}), "
                         f"found {int(y.max())}")
    return y


def _check_ks(ks, name="ks"):
    if isinstance(ks, numbers.Integral):
        ks = (ks,)
    ks = tuple(ks)
    if not ks:
        raise ValueError(f"{name} is empty")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"{name} must hold positive ints, got {k!r}")
    return tuple(int(k) for k in ks)


def _normalize_rows(x, name):
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{name} has {int(np.sum(norms == 0))} all-zero row(s), which cannot "
                         "be L2-normalised")
    return x / norms


def _predictions(logits_or_predictions, labels, num_classes, name="logits_or_predictions"):
    """``(predictions [N], labels [N], num_classes)`` from 2-D logits or 1-D predictions."""
    x = _to_numpy(logits_or_predictions, name)
    if x.ndim == 2:
        logits = _check_scores(x, name)
        if num_classes is not None and num_classes != logits.shape[1]:
            raise ValueError(f"num_classes={num_classes} but {name} has {logits.shape[1]} columns")
        num_classes = logits.shape[1]
        pred = np.argmax(logits, axis=1).astype(np.int64)  # first maximum: lowest class index
    elif x.ndim == 1:
        pred = _check_labels(x, None, name)
    else:
        raise ValueError(f"{name} must be [N, C] logits or [N] predictions, "
                         f"got shape {tuple(x.shape)}")
    y = _check_labels(labels, pred.shape[0], "labels")
    if num_classes is None:
        num_classes = int(max(pred.max(), y.max())) + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) \
            or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    num_classes = int(num_classes)
    if y.max() >= num_classes:
        raise ValueError(f"labels must be < num_classes ({num_classes}), found {int(y.max())}")
    if pred.max() >= num_classes:
        raise ValueError(f"predictions must be < num_classes ({num_classes}), "
                         f"found {int(pred.max())}")
    return pred, y, num_classes


# --------------------------------------------------------------------------------------
# classification metrics
# --------------------------------------------------------------------------------------

def _label_ranks(logits, y):
    """0-based rank of each sample's label in its row ``[N]`` (ties: lower index first).

    A label with index ``y`` and score ``s`` is preceded by every class scoring more than
    ``s`` and every lower-indexed class scoring exactly ``s``; that is its position in
    ``argsort(-logits, kind="stable")``, computed in O(N * C) without sorting. Labels of
    ``-1`` (a class the scores do not cover) get the rank ``C``: never a hit.
    """
    n, c = logits.shape
    ranks = np.full(n, c, dtype=np.int64)
    known = y >= 0
    rows = np.nonzero(known)[0]
    if rows.size:
        target = logits[rows, y[rows]][:, None]                 # [n', 1]
        lower = np.arange(c)[None, :] < y[rows][:, None]         # [n', C]
        ranks[rows] = np.sum(logits[rows] > target, axis=1) + np.sum(
            (logits[rows] == target) & lower, axis=1)
    return ranks


def topk_accuracy(logits, labels, ks=(1, 5)):
    """Fraction of samples whose label is among the ``k`` highest-scoring classes.

    Args:
        logits: ``[N, C]`` scores (``numpy`` or ``mindspore.Tensor``).
        labels: ``[N]`` class indices in ``[0, C)``.
        ks: one positive int or a sequence of them. A ``k`` above ``C`` is clamped to ``C``.

    Returns:
        ``{k: accuracy}`` with one float in ``[0, 1]`` per requested ``k``.

    Ties are broken by class index (lower first), as in ``argsort(-logits, kind="stable")``.
    """
    logits = _check_scores(logits, "logits")
    ks = _check_ks(ks)
    y = _check_labels(labels, logits.shape[0], num_classes=logits.shape[1])
    ranks = _label_ranks(logits, y)
    return {k: float(np.mean(ranks < min(k, logits.shape[1]))) for k in ks}


def mean_per_class_recall(logits_or_predictions, labels, num_classes=None):
    """Recall (accuracy) of each class, averaged over the classes present in ``labels``.

    Args:
        logits_or_predictions: ``[N, C]`` scores (the prediction is the arg-max, lowest index
            on ties) or ``[N]`` predicted class indices.
        labels: ``[N]`` true class indices.
        num_classes: number of classes; only used to check the indices (for logits it must
            equal ``C``).

    Returns:
        The mean, over every class that occurs at least once in ``labels``, of the fraction of
        that class's samples predicted correctly. Classes absent from ``labels`` have no
        recall and are left out of the mean (they are not counted as 0), so this equals the
        "mean per class" metric of the CLIP paper on any subset of a dataset.
    """
    pred, y, num_classes = _predictions(logits_or_predictions, labels, num_classes)
    support = np.bincount(y, minlength=num_classes)                       # [K]
    correct = np.bincount(y[pred == y], minlength=num_classes)            # [K]
    present = support > 0
    return float(np.mean(correct[present] / support[present]))


def confusion_matrix(logits_or_predictions, labels, num_classes=None):
    """``[K, K]`` int64 counts: row = true class, column = predicted class.

    Same layout as ``sklearn.metrics.confusion_matrix(labels, predictions)`` (note that the
    arguments here follow this module's order: predictions first). ``K`` is ``num_classes``,
    ``C`` for logits, or else one more than the largest index seen.
    """
    pred, y, num_classes = _predictions(logits_or_predictions, labels, num_classes)
    flat = np.bincount(y * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def classification_report(logits_or_predictions, labels, classnames=None, num_classes=None):
    """Per-class precision, recall, F1 and support, like scikit-learn's ``output_dict=True``.

    Returns:
        ``{name: {"precision", "recall", "f1", "support"}, ..., "accuracy": float,
        "mean_per_class_recall": float, "macro avg": {...}}`` where ``name`` comes from
        ``classnames`` (or is the class index as a string). A class that is never predicted has
        precision 0; a class absent from ``labels`` has recall 0 and support 0 in its own
        entry, and — like :func:`mean_per_class_recall` — classes with support 0 are left out
        of the "macro avg" entry.
    """
    if classnames is not None:
        classnames = [str(c) for c in classnames]
        if num_classes is None:
            num_classes = len(classnames)
        elif num_classes != len(classnames):
            raise ValueError(f"num_classes={num_classes} but {len(classnames)} classnames given")
    pred, y, num_classes = _predictions(logits_or_predictions, labels, num_classes)
    if classnames is not None and len(classnames) != num_classes:
        raise ValueError(f"{len(classnames)} classnames for {num_classes} classes")
    names = classnames if classnames is not None else [str(i) for i in range(num_classes)]
    if len(set(names)) != len(names):
        raise ValueError("classnames must be unique")
    cm = confusion_matrix(pred, y, num_classes)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    report = {}
    for i, name in enumerate(names):
        report[name] = {"precision": float(precision[i]), "recall": float(recall[i]),
                        "f1": float(f1[i]), "support": int(support[i])}
    present = support > 0
    report["accuracy"] = float(np.mean(pred == y))
    report["mean_per_class_recall"] = float(np.mean(recall[present]))
    report["macro avg"] = {"precision": float(np.mean(precision[present])),
                           "recall": float(np.mean(recall[present])),
                           "f1": float(np.mean(f1[present])),
                           "support": int(support.sum())}
    return report


def zero_shot_evaluate(image_features, labels, classifier, ks=(1, 5)):
    """Zero-shot classification accuracy from image features and a text classifier.

    Args:
        image_features: ``[N, D]`` image embeddings; L2-normalised here.
        labels: ``[N]`` class indices.
        classifier: ``[D, C]`` class embeddings, one column per class (the output of
            ``clip.zeroshot.zero_shot_classifier``), used as given (not re-normalised).
        ks: the top-k accuracies to report.

    Returns:
        ``{"top1": ..., "top5": ..., "mean_per_class_recall": ...}`` (one ``f"top{k}"`` entry
        per ``k``) computed from ``logits = 100 * normalize(image_features) @ classifier``,
        as in OpenAI's zero-shot notebook. Ties follow the module's rule (lower class first).
    """
    feats = _check_scores(image_features, "image_features")
    weights = _check_scores(classifier, "classifier")
    if feats.shape[1] != weights.shape[0]:
        raise ValueError(f"image_features have dimension {feats.shape[1]} but the classifier "
                         f"expects {weights.shape[0]} (classifier must be [D, C])")
    ks = _check_ks(ks)
    y = _check_labels(labels, feats.shape[0], num_classes=weights.shape[1])
    logits = 100.0 * _normalize_rows(feats, "image_features") @ weights      # [N, C]
    result = {f"top{k}": v for k, v in topk_accuracy(logits, y, ks).items()}
    result["mean_per_class_recall"] = mean_per_class_recall(logits, y)
    return result


# --------------------------------------------------------------------------------------
# logistic regression
# --------------------------------------------------------------------------------------

class ConvergenceWarning(UserWarning):
    """The solver stopped at ``max_iter`` before reaching its tolerance."""


def _minimize_lbfgs(fun_grad, theta0, max_iter, tol):
    """Minimise a smooth function with SciPy's L-BFGS-B (no bounds), starting at ``theta0``.

    ``fun_grad(theta)`` returns ``(f, grad)``. The solver settings are those of
    scikit-learn's ``lbfgs`` solver, so that both stop at the same point: stop when
    ``max|grad| <= tol`` (``gtol``) or when an iteration lowers the objective by less than
    ``64 * eps`` relative to its size (``ftol``); up to 50 evaluations per line search; at
    most ``max_iter`` iterations. SciPy's separate budget of function evaluations is lifted,
    so that ``max_iter`` is the only limit (each line search is bounded anyway).

    Returns ``(theta, n_iter, converged)``. ``converged`` is False only when ``max_iter`` was
    reached (SciPy's status 1). SciPy's other failure, status 2 (the line search found no
    lower point), means no step lowers the objective at working precision, which is counted
    as converged.
    """
    # imported here, not at the top: scipy.optimize takes ~0.5 s to import and most users
    # of ``import clip`` never fit a probe
    from scipy.optimize import minimize

    options = {"maxiter": max_iter, "gtol": tol, "ftol": 64 * _EPS, "maxls": 50,
               "maxfun": 2 ** 31 - 1}
    result = minimize(fun_grad, theta0, method="L-BFGS-B", jac=True, options=options)
    return result.x, int(result.nit), bool(result.status != 1)


def _softmax_loss_grad(X, Y_onehot, lam):
    """Objective ``mean cross-entropy + lam/2 ||W||^2`` over ``theta = [W (D*K), b (K)]``."""
    n, d = X.shape
    k = Y_onehot.shape[1]

    def fun_grad(theta):
        W = theta[:d * k].reshape(d, k)
        b = theta[d * k:]
        Z = X @ W + b                                            # [N, K]
        Z -= Z.max(axis=1, keepdims=True)
        E = np.exp(Z)
        S = E.sum(axis=1, keepdims=True)
        loss = np.sum(np.log(S[:, 0])) - np.sum(Z * Y_onehot)
        P = E / S
        P -= Y_onehot
        P /= n
        gW = X.T @ P + lam * W                                   # [D, K]
        gb = P.sum(axis=0)                                       # [K]
        f = loss / n + 0.5 * lam * np.sum(W * W)
        return f, np.concatenate([gW.ravel(), gb])
    return fun_grad


def _binary_loss_grad(X, y01, lam):
    """Objective ``mean log-loss + lam/2 ||w||^2`` over ``theta = [w (D), b]``."""
    n, d = X.shape

    def fun_grad(theta):
        w = theta[:d]
        z = X @ w + theta[d]                                      # [N]
        loss = np.sum(np.logaddexp(0.0, z) - y01 * z)
        r = (_sigmoid(z) - y01) / n
        gw = X.T @ r + lam * w
        f = loss / n + 0.5 * lam * np.dot(w, w)
        return f, np.concatenate([gw, [r.sum()]])
    return fun_grad


def _sigmoid(z):
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def _objective(X, y_idx, k, lam):
    """``(fun_grad, theta0)`` of the penalised log-loss for ``k`` classes (indices ``y_idx``).

    Two classes: the binomial loss over ``[w (D), b]``; more: the multinomial loss over
    ``[W (D*K), b (K)]``. The start ``theta0`` is zero, as in scikit-learn.
    """
    n, d = X.shape
    if k == 2:
        return _binary_loss_grad(X, y_idx.astype(np.float64), lam), np.zeros(d + 1)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y_idx] = 1.0
    return _softmax_loss_grad(X, onehot, lam), np.zeros(d * k + k)


def _unpack(theta, d, k):
    """``(coef [K, D] or [1, D], intercept [K] or [1])`` from the solver's parameter vector;
    for ``k > 2`` the intercepts are shifted to sum to zero (predictions are unchanged)."""
    if k == 2:
        return theta[:d][None, :].copy(), theta[d:].copy()
    b = theta[d * k:]
    return theta[:d * k].reshape(d, k).T.copy(), b - b.mean()


class LogisticRegression:
    """L2-regularised multinomial logistic regression (SciPy's L-BFGS-B), scikit-learn's API.

    A stand-in for ``sklearn.linear_model.LogisticRegression(C=C, max_iter=max_iter,
    tol=tol)`` with the default ``lbfgs`` solver: it minimises

    ``mean_i cross_entropy(softmax(x_i @ W + b), y_i) + ||W||^2 / (2 * C * N)``

    for three or more classes (``W`` is ``[D, K]``, every class has its own weights) and, for
    two classes, the binomial loss with a single weight vector, as scikit-learn does. The
    intercept is fitted and not penalised. Parameters start at zero and the solver (SciPy's
    L-BFGS-B, with scikit-learn's settings: ``gtol=tol``, ``ftol=64*eps``, 50 line-search
    steps) is deterministic. The computation runs in float64.

    Attributes after :meth:`fit`: ``classes_`` (sorted unique labels), ``coef_`` (``[K, D]``,
    or ``[1, D]`` for two classes), ``intercept_`` (``[K]`` or ``[1]``; for ``K > 2`` shifted
    to sum to zero, which does not change any prediction), ``n_iter_`` and ``converged_``.
    A :class:`ConvergenceWarning` is emitted when ``max_iter`` is reached first.
    """

    def __init__(self, C=1.0, max_iter=1000, tol=1e-4):
        if isinstance(C, bool) or not isinstance(C, numbers.Real) or not C > 0 \
                or not math.isfinite(C):
            raise ValueError(f"C must be a positive finite number, got {C!r}")
        if isinstance(max_iter, bool) or not isinstance(max_iter, numbers.Integral) \
                or max_iter < 1:
            raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
        if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not tol >= 0:
            raise ValueError(f"tol must be a number >= 0, got {tol!r}")
        self.C = float(C)
        self.max_iter = int(max_iter)
        self.tol = float(tol)

    def __repr__(self):
        return f"LogisticRegression(C={self.C!r}, max_iter={self.max_iter}, tol={self.tol!r})"

    def fit(self, X, y):
        """Fit on ``X`` ``[N, D]`` and labels ``y`` ``[N]`` (any sortable values); returns self."""
        X = _check_scores(X, "X")
        y = _to_numpy(y, "y")
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y must be 1-D with {X.shape[0]} entries, got shape {tuple(y.shape)}")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        n, d = X.shape
        k = len(self.classes_)
        if k < 2:
            raise ValueError(f"LogisticRegression needs at least 2 classes in y, got {k}")
        fun_grad, theta0 = _objective(X, y_idx, k, lam=1.0 / (self.C * n))
        theta, self.n_iter_, self.converged_ = _minimize_lbfgs(fun_grad, theta0,
                                                               self.max_iter, self.tol)
        self.coef_, self.intercept_ = _unpack(theta, d, k)
        if not self.converged_:
            warnings.warn(f"LogisticRegression(C={self.C:g}) did not converge in "
                          f"{self.max_iter} iterations; increase max_iter or lower C",
                          ConvergenceWarning, stacklevel=2)
        return self

    def _check_fitted(self, X):
        if not hasattr(self, "coef_"):
            raise RuntimeError("this LogisticRegression is not fitted yet; call fit first")
        X = _check_scores(X, "X")
        if X.shape[1] != self.coef_.shape[1]:
            raise ValueError(f"X has {X.shape[1]} features but the model was fitted on "
                             f"{self.coef_.shape[1]}")
        return X

    def decision_function(self, X):
        """``[N, K]`` class scores, or ``[N]`` scores of ``classes_[1]`` for two classes."""
        X = self._check_fitted(X)
        scores = X @ self.coef_.T + self.intercept_
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def _logits(self, X):
        """``[N, K]`` logits for every class (two classes: ``[0, z]``)."""
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return np.stack([np.zeros_like(scores), scores], axis=1)
        return scores

    def predict_proba(self, X):
        """``[N, K]`` class probabilities, columns in the order of ``classes_``."""
        z = self._logits(X)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X):
        """``[N]`` predicted labels (values from ``classes_``; ties go to the earlier class)."""
        logits = self._logits(X)
        return self.classes_[np.argmax(logits, axis=1)]

    def score(self, X, y):
        """Accuracy of :meth:`predict` on ``(X, y)``."""
        y = _to_numpy(y, "y")
        return float(np.mean(self.predict(X) == y))


# --------------------------------------------------------------------------------------
# linear probe
# --------------------------------------------------------------------------------------

# exponents of 10 in eighths of a decade: C = 10 ** (e / 8), e in [-48, 48] <=> [1e-6, 1e6]
_SWEEP_RESOLUTION = 8
_SWEEP_LIMIT = 6 * _SWEEP_RESOLUTION
_SWEEP_START = tuple(range(-_SWEEP_LIMIT, _SWEEP_LIMIT + 1, 2 * _SWEEP_RESOLUTION))


def _stratified_split(y, val_fraction, seed):
    """``(train_idx, val_idx)``: ``round(val_fraction * n_c)`` samples of each class go to
    validation (chosen by a seeded permutation), always leaving at least one in training."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = np.nonzero(y == c)[0]
        idx = idx[rng.permutation(idx.size)]
        n_val = min(int(round(val_fraction * idx.size)), idx.size - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    train = np.sort(np.concatenate(train))
    val = np.sort(np.concatenate(val))
    if val.size == 0:
        raise ValueError(f"val_fraction={val_fraction} leaves no validation samples for "
                         f"{y.size} training samples; raise it or pass val_features/val_labels")
    return train, val


def _class_logits(clf, X, num_classes):
    """``[N, num_classes]`` logits with a column for every class index (absent: -inf)."""
    logits = np.full((X.shape[0], num_classes), -np.inf)
    logits[:, clf.classes_] = clf._logits(X)
    return logits


def _probe_scores(clf, X, y, ks):
    """Accuracy, top-k and mean per-class recall of a fitted classifier on ``(X, y)``."""
    num_classes = int(max(y.max(), clf.classes_.max())) + 1
    logits = _class_logits(clf, X, num_classes)
    finite = np.where(np.isfinite(logits), logits, np.finfo(np.float64).min)
    ranks = _label_ranks(finite, y)
    # a class the classifier never saw can never be predicted or ranked in the top k
    unseen = ~np.isin(y, clf.classes_)
    ranks[unseen] = num_classes
    pred = clf.classes_[np.argmax(clf._logits(X), axis=1)]
    support = np.bincount(y, minlength=num_classes)
    correct = np.bincount(y[pred == y], minlength=num_classes)
    present = support > 0
    scores = {"accuracy": float(np.mean(pred == y)),
              "mean_per_class_recall": float(np.mean(correct[present] / support[present]))}
    for k in ks:
        scores[f"top{k}"] = float(np.mean(ranks < min(k, len(clf.classes_))))
    return scores


def linear_probe(train_features, train_labels, test_features, test_labels, *,
                 val_features=None, val_labels=None, C_values=None, val_fraction=0.2,
                 seed=0, max_iter=1000, tol=1e-4, metric="accuracy", ks=(1, 5)):
    """Linear-probe evaluation of frozen features, following the CLIP paper (appendix A.3).

    1. **Validation split.** With ``val_features``/``val_labels`` given, they are the
       validation set; otherwise the training set is split, per class, with
       ``round(val_fraction * n_class)`` samples of each class (at least one always stays in
       training) going to validation, chosen by ``numpy.random.default_rng(seed)``.
    2. **Choice of C** (scikit-learn's ``C``, the inverse of the paper's L2 strength
       ``lambda``) by the paper's parametric binary search over ``[1e-6, 1e6]``: fit on the
       training part and score on the validation part ``C = 1e-6, 1e-4, 1e-2, 1, 1e2, 1e4,
       1e6``; then, with the step halved each time (1 decade, 1/2, 1/4 and 1/8 of a decade),
       also score the two neighbours ``best * 10**(+-step)`` that lie in the range, ``best``
       being the best ``C`` scored so far. The search ends at a resolution of 8 steps per
       decade (the paper's 96 log-spaced values), after at most 15 fits. The score is
       ``metric`` on the validation set: ``"accuracy"`` or ``"mean_per_class_recall"``; on
       equal scores the **smaller C** (stronger regularisation) wins.
       With ``C_values`` given, exactly those values are scored instead (no refinement); a
       single value is used directly without any validation fit.
    3. **Final fit** on the whole training set (plus the given validation set, if any) with
       the chosen ``C``, evaluated on the test set.

    Args:
        train_features: ``[N, D]`` features (numpy or ``mindspore.Tensor``), used as given.
        train_labels: ``[N]`` class indices.
        test_features, test_labels: ``[M, D]`` and ``[M]``.
        val_features, val_labels: an optional separate validation set (both or neither).
        C_values: optional explicit values of ``C`` to choose from.
        val_fraction: share of each class held out for validation, in ``(0, 1)``.
        seed: seed of the validation split. Everything else is deterministic.
        max_iter, tol: passed to :class:`LogisticRegression`.
        metric: the validation score used to choose ``C``.
        ks: the test top-k accuracies to report.

    Returns:
        A dict with ``"C"`` (chosen), ``"val_accuracy"`` and ``"val_score"`` (the validation
        accuracy and ``metric`` at the chosen ``C``; ``None`` when no validation was run),
        ``"test_top1"``, ``"test_top5"``... (one per ``k``), ``"mean_per_class_recall"`` (on
        test), ``"classifier"`` (the final :class:`LogisticRegression`) and ``"sweep"`` (a
        list of ``{"C", "val_accuracy", "val_score", "n_iter", "converged"}`` in the order
        the values were tried). Convergence warnings of the sweep's fits are not emitted (see
        ``"converged"`` in ``"sweep"``); the final fit warns as usual.
    """
    if metric not in ("accuracy", "mean_per_class_recall"):
        raise ValueError(f"metric must be 'accuracy' or 'mean_per_class_recall', got {metric!r}")
    ks = _check_ks(ks)
    X = _check_scores(train_features, "train_features")
    y = _check_labels(train_labels, X.shape[0], "train_labels")
    X_test = _check_scores(test_features, "test_features")
    if X_test.shape[1] != X.shape[1]:
        raise ValueError(f"test_features have dimension {X_test.shape[1]}, "
                         f"train_features {X.shape[1]}")
    y_test = _check_labels(test_labels, X_test.shape[0], "test_labels")
    if (val_features is None) != (val_labels is None):
        raise ValueError("pass both val_features and val_labels, or neither")
    if np.unique(y).size < 2:
        raise ValueError("train_labels must contain at least 2 classes")

    if C_values is not None:
        C_values = [float(c) for c in np.atleast_1d(_to_numpy(C_values, "C_values"))]
        if not C_values or any(not (c > 0 and math.isfinite(c)) for c in C_values):
            raise ValueError(f"C_values must be positive finite numbers, got {C_values}")

    if val_features is not None:
        X_val = _check_scores(val_features, "val_features")
        if X_val.shape[1] != X.shape[1]:
            raise ValueError(f"val_features have dimension {X_val.shape[1]}, "
                             f"train_features {X.shape[1]}")
        y_val = _check_labels(val_labels, X_val.shape[0], "val_labels")
        X_fit, y_fit = X, y
        X_final, y_final = np.concatenate([X, X_val]), np.concatenate([y, y_val])
    else:
        X_final, y_final = X, y
        if C_values is None or len(C_values) > 1:
            if not 0 < val_fraction < 1:
                raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
            tr, va = _stratified_split(y, val_fraction, seed)
            X_fit, y_fit, X_val, y_val = X[tr], y[tr], X[va], y[va]

    sweep = []
    tried = {}

    def evaluate(C):
        if C in tried:
            return tried[C]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(C=C, max_iter=max_iter, tol=tol).fit(X_fit, y_fit)
        s = _probe_scores(clf, X_val, y_val, ())
        entry = {"C": C, "val_accuracy": s["accuracy"], "val_score": s[metric],
                 "n_iter": clf.n_iter_, "converged": clf.converged_}
        sweep.append(entry)
        tried[C] = entry
        return entry

    def best_of(entries):
        # highest score; on ties the smaller C
        return max(entries, key=lambda e: (e["val_score"], -e["C"]))

    if C_values is not None and len(C_values) == 1:
        best = {"C": C_values[0], "val_accuracy": None, "val_score": None}
    elif C_values is not None:
        best = best_of([evaluate(c) for c in C_values])
    else:
        exps = {}
        for e in _SWEEP_START:
            exps[e] = evaluate(10.0 ** (e / _SWEEP_RESOLUTION))
        step = _SWEEP_RESOLUTION
        while step >= 1:
            best_e = max(exps, key=lambda e: (exps[e]["val_score"], -e))
            for e in (best_e - step, best_e + step):
                if -_SWEEP_LIMIT <= e <= _SWEEP_LIMIT and e not in exps:
                    exps[e] = evaluate(10.0 ** (e / _SWEEP_RESOLUTION))
            step //= 2
        best_e = max(exps, key=lambda e: (exps[e]["val_score"], -e))
        best = exps[best_e]

    clf = LogisticRegression(C=best["C"], max_iter=max_iter, tol=tol).fit(X_final, y_final)
    test = _probe_scores(clf, X_test, y_test, ks)
    result = {"C": best["C"], "val_accuracy": best["val_accuracy"], "val_score": best["val_score"]}
    for k in ks:
        result[f"test_top{k}"] = test[f"top{k}"]
    result["mean_per_class_recall"] = test["mean_per_class_recall"]
    result["classifier"] = clf
    result["sweep"] = sweep
    return result


# --------------------------------------------------------------------------------------
# retrieval
# --------------------------------------------------------------------------------------

def retrieval_recall(image_features, text_features, text_to_image, ks=(1, 5, 10),
                     chunk_size=1024):
    """Image-to-text and text-to-image Recall@k with several captions per image.

    Args:
        image_features: ``[Ni, D]`` image embeddings; L2-normalised here.
        text_features: ``[Nt, D]`` caption embeddings; L2-normalised here.
        text_to_image: ``[Nt]`` index of the image each caption belongs to (as returned by
            ``clip.datasets.group_captions``).
        ks: the recalls to report; a ``k`` above the number of candidates is clamped to it.
        chunk_size: rows of the similarity matrix computed at a time (memory bound only).

    Returns:
        ``{"image_to_text_R@1": ..., "text_to_image_R@1": ..., ...}`` (fractions in [0, 1])
        for every ``k``. Similarity is the cosine; ties are broken by index (lower first).

        * text→image: a caption is a hit at ``k`` when its image is among its ``k`` most
          similar images; averaged over all captions.
        * image→text: an image is a hit at ``k`` when *any* of its captions is among its
          ``k`` most similar captions; averaged over the images that have at least one caption
          (images without captions only act as distractors for text→image).
    """
    img = _check_scores(image_features, "image_features")
    txt = _check_scores(text_features, "text_features")
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"image_features have dimension {img.shape[1]} but text_features "
                         f"{txt.shape[1]}")
    ks = _check_ks(ks)
    t2i = _check_labels(text_to_image, txt.shape[0], "text_to_image", num_classes=img.shape[0])
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) \
            or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    img = _normalize_rows(img, "image_features")
    txt = _normalize_rows(txt, "text_features")
    n_img, n_txt = img.shape[0], txt.shape[0]

    # text -> image: rank of each caption's image among all images
    t2i_ranks = np.empty(n_txt, dtype=np.int64)
    for start in range(0, n_txt, chunk_size):
        sim = txt[start:start + chunk_size] @ img.T                   # [b, Ni]
        t2i_ranks[start:start + chunk_size] = _label_ranks(sim, t2i[start:start + chunk_size])

    # image -> text: rank of the best-placed caption of each image. Caption order is
    # (similarity descending, index ascending); the first of an image's captions in that
    # order is its highest-similarity caption with the lowest index.
    has_caption = np.bincount(t2i, minlength=n_img) > 0
    i2t_ranks = np.empty(n_img, dtype=np.int64)
    order = np.argsort(t2i, kind="stable")                            # captions grouped by image
    bounds = np.searchsorted(t2i[order], np.arange(n_img + 1))
    for start in range(0, n_img, chunk_size):
        stop = min(start + chunk_size, n_img)
        sim = img[start:stop] @ txt.T                                 # [b, Nt]
        best = np.full(stop - start, -1, dtype=np.int64)
        for i in range(start, stop):
            caps = order[bounds[i]:bounds[i + 1]]                     # ascending indices
            if caps.size:
                best[i - start] = caps[np.argmax(sim[i - start, caps])]
        i2t_ranks[start:stop] = _label_ranks(sim, best)

    i2t_ranks = i2t_ranks[has_caption]
    result = {}
    for k in ks:
        result[f"image_to_text_R@{k}"] = float(np.mean(i2t_ranks < min(k, n_txt)))
        result[f"text_to_image_R@{k}"] = float(np.mean(t2i_ranks < min(k, n_img)))
    return result
