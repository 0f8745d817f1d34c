"""Time to fit the linear probe's logistic regression: SciPy's L-BFGS-B (``clip.evaluation``
now), the hand-written L-BFGS it replaced, and scikit-learn's ``LogisticRegression``.

    python benchmarks/bench_linear_probe.py [--n 10000] [--dim 512] [--classes 100] [--C 1.0]
                                            [--impls scipy,handwritten,sklearn] [--repeat 1]
                                            [--threads N] [--old-ref auto] [--json OUT.json]

Data (fixed seed): ``classes`` class means drawn from N(0, 1) in ``dim`` dimensions, balanced
random labels, features = mean of the label + ``noise`` * N(0, 1). Every implementation fits
the same ``[n, dim]`` float64 array with the same ``C``, ``max_iter`` and ``tol``, after one
untimed warm-up fit on 200 samples:

- ``scipy``: ``clip.evaluation.LogisticRegression`` from this working tree;
- ``handwritten``: the same class from the last commit whose ``clip/evaluation.py`` still has
  the hand-written Wolfe line search and L-BFGS (``--old-ref auto``; or any git revision). The
  file is read with ``git show`` and loaded into a temporary module: no copy of the old code
  lives in the repository;
- ``sklearn``: ``sklearn.linear_model.LogisticRegression(C, max_iter, tol)`` (lbfgs), the
  reference, when scikit-learn is installed.

Both ``clip.evaluation`` versions are loaded from their file alone, without ``import clip``,
so MindSpore is not imported and its threads do not compete with the fits. For each fit the
script prints the wall-clock seconds (best of ``--repeat``), the iterations, whether it
converged, the objective reached (``mean log-loss + ||W||^2 / (2 C n)``, computed alike for all
three), the training accuracy and the largest difference of its probabilities from
scikit-learn's; plus the CPU model and whether the CPU has AVX-512F (from ``/proc/cpuinfo``),
the CPU count and the library versions. It measures and reports; it asserts nothing.
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODULE_PATH = "clip/evaluation.py"
OLD_MARKER = "def _wolfe_line_search("
IMPLS = ("scipy", "handwritten", "sklearn")


def parse_args(argv=None):
    """Command-line options (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10000, help="training samples")
    p.add_argument("--dim", type=int, default=512, help="feature dimension")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--noise", type=float, default=8.0, help="std of the noise around a class mean")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength (scikit-learn's C)")
    p.add_argument("--max-iter", type=int, default=1000)
    p.add_argument("--tol", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--impls", default=",".join(IMPLS),
                   help=f"comma-separated subset of {','.join(IMPLS)}")
    p.add_argument("--repeat", type=int, default=1, help="fits per implementation (best is shown)")
    p.add_argument("--threads", type=int, default=None,
                   help="set OMP/OPENBLAS/MKL_NUM_THREADS before NumPy is imported")
    p.add_argument("--old-ref", default="auto",
                   help="git revision of the hand-written solver ('auto': the newest that has it)")
    p.add_argument("--json", default=None, help="also write every number to this file")
    args = p.parse_args(argv)
    args.impls = [s.strip() for s in args.impls.split(",") if s.strip()]
    unknown = set(args.impls) - set(IMPLS)
    if unknown:
        p.error(f"unknown --impls {sorted(unknown)}; choose from {IMPLS}")
    return args


# ---------------------------------------------------------------------------------------------
# machine
# ---------------------------------------------------------------------------------------------

def cpu_info():
    """``{"model", "avx512f", "cpus"}`` from ``/proc/cpuinfo`` (model None off Linux)."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model, "avx512f": "avx512f" in flags, "cpus": cpus}


def versions():
    """Versions of the libraries the fits use."""
    import numpy
    import scipy
    out = {"python": sys.version.split()[0], "numpy": numpy.__version__, "scipy": scipy.__version__}
    try:
        import sklearn
        out["sklearn"] = sklearn.__version__
    except ImportError:
        out["sklearn"] = None
    return out


# ---------------------------------------------------------------------------------------------
# implementations
# ---------------------------------------------------------------------------------------------

def load_module_from_source(name, source, filename):
    """Execute ``source`` as a fresh module called ``name`` (not added to ``sys.modules``)."""
    import types
    module = types.ModuleType(name)
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def git(*args):
    """Output of ``git -C ROOT args`` (raises CalledProcessError on failure)."""
    import subprocess
    return subprocess.run(["git", "-C", ROOT, *args], check=True, capture_output=True,
                          text=True).stdout


def find_old_ref():
    """Newest commit whose ``clip/evaluation.py`` still has the hand-written solver."""
    for commit in git("rev-list", "HEAD", "--", MODULE_PATH).split():
        if OLD_MARKER in git("show", f"{commit}:{MODULE_PATH}"):
            return commit
    raise SystemExit(f"no commit of {MODULE_PATH} contains {OLD_MARKER!r}")


def load_new():
    """``clip.evaluation`` of the working tree, loaded from its file."""
    path = os.path.join(ROOT, MODULE_PATH)
    with open(path, encoding="utf-8") as f:
        return load_module_from_source("evaluation_scipy", f.read(), path)


def load_old(ref):
    """``(module, commit)``: ``clip/evaluation.py`` at ``ref`` (``auto``: see find_old_ref)."""
    commit = find_old_ref() if ref == "auto" else git("rev-parse", ref).strip()
    source = git("show", f"{commit}:{MODULE_PATH}")
    if OLD_MARKER not in source:
        raise SystemExit(f"{MODULE_PATH} at {commit[:12]} has no hand-written L-BFGS")
    return load_module_from_source("evaluation_handwritten", source,
                                   f"{commit[:12]}:{MODULE_PATH}"), commit


def make_fitters(args):
    """``{impl: (label, fit(X, y) -> (classifier, n_iter, converged))}`` for ``args.impls``."""
    import warnings
    fitters, notes = {}, {}

    def ours(module):
        def fit(X, y):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", module.ConvergenceWarning)
                clf = module.LogisticRegression(C=args.C, max_iter=args.max_iter, tol=args.tol)
                clf.fit(X, y)
            return clf, clf.n_iter_, clf.converged_
        return fit

    if "scipy" in args.impls:
        fitters["scipy"] = ("clip.evaluation (SciPy L-BFGS-B)", ours(load_new()))
    if "handwritten" in args.impls:
        module, commit = load_old(args.old_ref)
        notes["handwritten_commit"] = commit
        fitters["handwritten"] = (f"hand-written L-BFGS ({commit[:8]})", ours(module))
    if "sklearn" in args.impls:
        try:
            from sklearn.exceptions import ConvergenceWarning
            from sklearn.linear_model import LogisticRegression
        except ImportError:
            print("scikit-learn is not installed: skipping the reference fit")
        else:
            def fit_sklearn(X, y):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    clf = LogisticRegression(C=args.C, max_iter=args.max_iter, tol=args.tol)
                    clf.fit(X, y)
                n_iter = int(clf.n_iter_[0])
                return clf, n_iter, n_iter < args.max_iter
            fitters["sklearn"] = ("scikit-learn LogisticRegression", fit_sklearn)
    return fitters, notes


# ---------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------

def make_data(n, dim, classes, noise, seed):
    """``(X [n, dim] float64, y [n])``: class means from N(0, 1) plus ``noise`` * N(0, 1)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(classes, dim))
    y = rng.permutation(np.arange(n) % classes)
    X = means[y] + noise * rng.normal(size=(n, dim))
    return X, y


def objective(clf, X, y, C):
    """``mean log-loss + ||coef||^2 / (2 C n)`` of a fitted classifier (scikit-learn's)."""
    import numpy as np
    proba = clf.predict_proba(X)
    p = proba[np.arange(len(y)), np.searchsorted(clf.classes_, y)]
    return float(-np.mean(np.log(np.maximum(p, np.finfo(np.float64).tiny)))
                 + np.sum(clf.coef_ ** 2) / (2 * C * len(y)))


def time_fit(fit, X, y, repeat, warmup=200):
    """``(best seconds, all seconds, (classifier, n_iter, converged) of the last fit)``.

    An untimed fit on the first ``warmup`` samples comes first, so that one-time costs (lazy
    imports such as ``scipy.optimize``, caches) are not counted.
    """
    import time
    fit(X[:warmup], y[:warmup])
    seconds, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fit(X, y)
        seconds.append(time.perf_counter() - start)
    return min(seconds), seconds, result


def run(args):
    """Fit every implementation on the same data; returns the rows of the report."""
    import numpy as np
    X, y = make_data(args.n, args.dim, args.classes, args.noise, args.seed)
    fitters, notes = make_fitters(args)
    rows, probas = [], {}
    for impl, (label, fit) in fitters.items():
        print(f"fitting {label} ...", flush=True)
        best, seconds, (clf, n_iter, converged) = time_fit(fit, X, y, args.repeat)
        probas[impl] = clf.predict_proba(X)
        rows.append({"impl": impl, "label": label, "seconds": best, "all_seconds": seconds,
                     "n_iter": int(n_iter), "converged": bool(converged),
                     "objective": objective(clf, X, y, args.C),
                     "train_accuracy": float(np.mean(clf.predict(X) == y))})
    for row in rows:
        ref = probas.get("sklearn")
        row["max_abs_dp_vs_sklearn"] = (None if ref is None
                                        else float(np.max(np.abs(probas[row["impl"]] - ref))))
    return rows, notes


def print_report(args, rows, machine, libs):
    """The table of results and the machine description."""
    print()
    print(f"machine: {machine['model']} | avx512f: {'yes' if machine['avx512f'] else 'no'} | "
          f"CPUs usable: {machine['cpus']} | threads env: "
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in libs.items()))
    print(f"data: {args.n} x {args.dim} float64, {args.classes} classes, noise {args.noise}, "
          f"seed {args.seed}; C={args.C:g}, max_iter={args.max_iter}, tol={args.tol:g}, "
          f"best of {args.repeat}")
    head = f"{'implementation':<36} {'seconds':>8} {'iters':>6} {'conv':>5} " \
           f"{'objective':>14} {'train acc':>9} {'max|dp| vs sk':>13}"
    print(head)
    print("-" * len(head))
    base = next((r["seconds"] for r in rows if r["impl"] == "scipy"), None)
    for r in rows:
        dp = "-" if r["max_abs_dp_vs_sklearn"] is None else f"{r['max_abs_dp_vs_sklearn']:.1e}"
        print(f"{r['label']:<36} {r['seconds']:>8.2f} {r['n_iter']:>6d} "
              f"{'yes' if r['converged'] else 'NO':>5} {r['objective']:>14.10f} "
              f"{r['train_accuracy']:>9.4f} {dp:>13}")
    if base:
        print("seconds relative to the SciPy fit: " + ", ".join(
            f"{r['impl']} {r['seconds'] / base:.2f}x" for r in rows))


def main(argv=None):
    """Run the benchmark; returns the exit status (0: every requested fit ran)."""
    args = parse_args(argv)
    if args.threads is not None:   # before NumPy is imported, or the BLAS ignores it
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    machine, libs = cpu_info(), versions()
    rows, notes = run(args)
    print_report(args, rows, machine, libs)
    if args.json:
        import json
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"args": vars(args), "machine": machine, "versions": libs,
                       "results": rows, **notes}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
