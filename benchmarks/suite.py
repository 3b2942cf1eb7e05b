"""The robustness suite: 35 problems, split once into a development and a held-out half.

Every problem is minimised. Each has a known minimum (`optimum`) or, for the real
tuning tasks, a fixed reference value (`reference=True`: the best of 2000 random
evaluations, see `reference_values`). The split was fixed when the suite was written,
before any contestant ran on it, by kind, so that both halves cover the same ground:

- smooth, multimodal and ill-conditioned test functions from 2 to 10 dimensions;
- low effective dimension: a few relevant parameters placed among 20 to 40 that do nothing;
- additive Gaussian observation noise at a low and a high level (`noise`, the standard
  deviation); these are scored by the *true* value of the configuration a contestant
  reports as its best, not by its luckiest observation;
- observation noise large against the objective's spread (`noisy-spread`, two problems
  in each half, added to the suite together, before any contestant ran on them): the
  standard deviation is the smaller of 0.3 times the standard deviation of the
  objective over 2000 uniformly random configurations and the median regret of random
  search's best of `budget` noise-free evaluations (20 seeds), to two figures. The
  other noisy problems' noise is small against the spread (under 0.05 of it) except
  `noisy_hartmann3`'s, which the rule reproduces (0.3 of a spread of 0.96);
- HPO-shaped mixed spaces: log-scaled, integer and categorical parameters with
  interactions (the best learning rate depends on the batch size or the optimizer);
- real tuning tasks: scikit-learn models on the datasets scikit-learn ships, scored by
  cross-validation, and the digits MLP of `python -m hyperoptax.demo`.

The development half holds the five problems whose results chose earlier settings
(Branin, Hartmann-6, Ackley-5, Rosenbrock-4, the mixed problem) and the digits MLP. The
held-out half is for reporting only: no setting may be chosen by looking at it.

Test functions are written from their published definitions (Surjanovic & Bingham's
Virtual Library of Simulation Experiments; the BBOB/COCO function definitions).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import hyperoptax as hx

DEV, HELD_OUT = "dev", "held-out"


@dataclasses.dataclass(frozen=True)
class Problem:
    name: str
    half: str
    kind: str
    space: dict
    f: Callable  # the noiseless objective: f(params) (JAX), or f(config) on the host
    optimum: float  # the known minimum, or the reference value when `reference`
    budget: int
    noise: float = 0.0
    host: bool = False  # a scikit-learn objective: plain Python values in, a float out
    reference: bool = False
    x_opt: dict | None = None  # a minimiser, where known (to state the float32 floor)
    tie: float = 0.0  # results closer than this are ties: one validation example of an error rate

    @property
    def dim(self) -> int:
        return len(self.space)

    def objective(self, key, params):
        """What a JAX contestant evaluates: the true value plus the observation noise."""
        value = self.f(params)
        if self.noise:
            value = value + self.noise * jax.random.normal(key, (), value.dtype)
        return value


def _box(n, lo, hi, prefix="x"):
    return {f"{prefix}{i}": hx.LinearSpace(lo, hi) for i in range(n)}


def _vec(p, n, prefix="x"):
    return jnp.stack([jnp.asarray(p[f"{prefix}{i}"], jnp.result_type(float)) for i in range(n)])


def _at(n, values, prefix="x"):
    return {f"{prefix}{i}": v for i, v in zip(range(n), values, strict=True)}


# -- smooth, multimodal, ill-conditioned -------------------------------------------------

BRANIN_MIN = 5.0 / (4.0 * math.pi)  # 0.39788735772973816


def branin_vec(x):
    x1, x2 = x[0], x[1]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * jnp.cos(x1) + 10


def six_hump_camel(x):
    x1, x2 = x[0], x[1]
    return (4 - 2.1 * x1**2 + x1**4 / 3) * x1**2 + x1 * x2 + (-4 + 4 * x2**2) * x2**2


def goldstein_price(x):
    x1, x2 = x[0], x[1]
    a = 1 + (x1 + x2 + 1) ** 2 * (19 - 14 * x1 + 3 * x1**2 - 14 * x2 + 6 * x1 * x2 + 3 * x2**2)
    b = 30 + (2 * x1 - 3 * x2) ** 2 * (
        18 - 32 * x1 + 12 * x1**2 + 48 * x2 - 36 * x1 * x2 + 27 * x2**2
    )
    return a * b


_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array(
    [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]
)
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def _hartmann(A, P):
    def f(x):
        return -jnp.sum(_H_ALPHA * jnp.exp(-jnp.sum(A * (x[None, :] - P) ** 2, axis=1)))

    return f


hartmann3, hartmann6 = _hartmann(_H3_A, _H3_P), _hartmann(_H6_A, _H6_P)


def ackley(x):
    return (
        -20 * jnp.exp(-0.2 * jnp.sqrt(jnp.mean(x**2)))
        - jnp.exp(jnp.mean(jnp.cos(2 * math.pi * x)))
        + 20
        + math.e
    )


def rosenbrock(x):
    return jnp.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def levy(x):
    w = 1 + (x - 1) / 4
    head = jnp.sin(math.pi * w[0]) ** 2
    mid = jnp.sum((w[:-1] - 1) ** 2 * (1 + 10 * jnp.sin(math.pi * w[:-1] + 1) ** 2))
    tail = (w[-1] - 1) ** 2 * (1 + jnp.sin(2 * math.pi * w[-1]) ** 2)
    return head + mid + tail


def rastrigin(x):
    return 10 * x.shape[0] + jnp.sum(x**2 - 10 * jnp.cos(2 * math.pi * x))


def styblinski_tang(x):
    return 0.5 * jnp.sum(x**4 - 16 * x**2 + 5 * x)


def _styblinski_tang_min():
    # The minimiser of x^4 - 16 x^2 + 5 x on [-5, 5], by Newton's method in float64.
    x = -2.9
    for _ in range(50):
        x -= (4 * x**3 - 32 * x + 5) / (12 * x**2 - 32)
    return x, 0.5 * (x**4 - 16 * x**2 + 5 * x)


ST_X, ST_MIN = _styblinski_tang_min()

_SHEKEL_C = np.array([0.1, 0.2, 0.2, 0.4, 0.4, 0.6, 0.3, 0.7, 0.5, 0.5])
_SHEKEL_A = np.array(
    [
        [4, 4, 4, 4],
        [1, 1, 1, 1],
        [8, 8, 8, 8],
        [6, 6, 6, 6],
        [3, 7, 3, 7],
        [2, 9, 2, 9],
        [5, 5, 3, 3],
        [8, 1, 8, 1],
        [6, 2, 6, 2],
        [7, 3.6, 7, 3.6],
    ],
    float,
)


def shekel(x):
    return -jnp.sum(1.0 / (jnp.sum((x[None, :] - _SHEKEL_A) ** 2, axis=1) + _SHEKEL_C))


def dixon_price(x):
    i = jnp.arange(2, x.shape[0] + 1, dtype=x.dtype)
    return (x[0] - 1) ** 2 + jnp.sum(i * (2 * x[1:] ** 2 - x[:-1]) ** 2)


def _rotation(d, seed):
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q * np.sign(np.diag(r))


_ELL_R = _rotation(8, 8)
_ELL_SHIFT = np.random.default_rng(18).uniform(-3, 3, 8)
_ELL_W = 10.0 ** (4.0 * np.arange(8) / 7)  # condition number 1e4


def ellipsoid_rotated(x):
    # BBOB-style rotated ellipsoid: ill-conditioned and not separable.
    z = jnp.asarray(_ELL_R, x.dtype) @ (x - _ELL_SHIFT)
    return jnp.sum(_ELL_W * z**2)


# -- low effective dimension --------------------------------------------------------------


def _embedded(fn, positions, lo, hi):
    """`fn` of the unit-cube coordinates at `positions`, mapped onto [lo, hi]; others do nothing."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)

    def f(x):
        return fn(lo + (hi - lo) * x[np.asarray(positions)])

    return f


# -- HPO-shaped problems ------------------------------------------------------------------


def mixed(p):
    # Log learning rate, integer layers, log-integer width, linear dropout.
    return (
        (jnp.log10(p["lr"]) + 2.5) ** 2
        + 0.3 * (p["layers"] - 3) ** 2
        + 0.5 * (jnp.log2(p["width"]) - 7) ** 2
        + 4 * (p["dropout"] - 0.2) ** 2
    )


HPO_TRAIN12_SPACE = {
    "lr": hx.LogSpace(1e-5, 1.0),
    "batch": hx.QLogSpace(16, 1024),
    "depth": hx.QLinearSpace(1, 8),
    "width": hx.QLogSpace(16, 1024),
    "dropout": hx.LinearSpace(0.0, 0.8),
    "weight_decay": hx.LogSpace(1e-6, 1e-1),
    "warmup": hx.LinearSpace(0.0, 0.3),
    "beta2": hx.LinearSpace(0.9, 0.9999),
    "label_smoothing": hx.LinearSpace(0.0, 0.3),
    "clip": hx.LogSpace(0.1, 10.0),
    "unused_a": hx.LinearSpace(0.0, 1.0),
    "unused_b": hx.LogSpace(1.0, 100.0),
}


def hpo_train12(p):
    # A validation loss shaped like a training run's: the best learning rate grows with the
    # square root of the batch size, the best dropout with the capacity (depth x log width),
    # weight decay matters more for wide networks, two parameters do nothing. Minimum 0.1.
    log_lr_star = math.log10(3e-3) + 0.5 * (jnp.log10(p["batch"]) - math.log10(128))
    capacity = p["depth"] * jnp.log2(p["width"]) / 32.0  # 1 at depth 4, width 256
    lr = 1.5 * (jnp.log10(p["lr"]) - log_lr_star) ** 2
    size = 0.15 * (p["depth"] - 4) ** 2 / 4 + 0.2 * (jnp.log2(p["width"]) - 8) ** 2 / 4
    drop = 2.0 * (p["dropout"] - 0.3 * capacity) ** 2
    wd = (0.05 + 0.1 * capacity) * (jnp.log10(p["weight_decay"]) + 4) ** 2 / 4
    warm = 0.5 * (p["warmup"] - 0.1) ** 2
    beta2 = 0.1 * ((p["beta2"] - 0.99) / 0.05) ** 2
    ls = 0.5 * (p["label_smoothing"] - 0.1) ** 2
    clip = 0.05 * jnp.log10(p["clip"]) ** 2
    batch_time = 0.02 * (jnp.log2(p["batch"]) - 7) ** 2 / 4
    return 0.1 + lr + size + drop + wd + warm + beta2 + ls + clip + batch_time


HPO_TRAIN12_OPT = dict(
    lr=3e-3,
    batch=128,
    depth=4,
    width=256,
    dropout=0.3,
    weight_decay=1e-4,
    warmup=0.1,
    beta2=0.99,
    label_smoothing=0.1,
    clip=1.0,
    unused_a=0.5,
    unused_b=10.0,
)

HPO_TRAIN10_SPACE = {
    "lr": hx.LogSpace(1e-6, 1e-1),
    "batch": hx.QLogSpace(8, 512),
    "layers": hx.QLinearSpace(1, 12),
    "heads": hx.QLinearSpace(1, 16),
    "dropout": hx.LinearSpace(0.0, 0.6),
    "weight_decay": hx.LogSpace(1e-5, 1.0),
    "epochs": hx.QLinearSpace(5, 100),
    "momentum": hx.LinearSpace(0.0, 0.99),
    "unused_a": hx.LogSpace(1e-3, 1.0),
    "unused_b": hx.QLinearSpace(0, 10),
}


def hpo_train10(p):
    # The best learning rate falls with depth and grows with the batch size; the best dropout
    # grows with the number of epochs; more epochs help with diminishing returns and a cost.
    # Minimum 0.2.
    log_lr_star = -3.5 - 0.08 * (p["layers"] - 6) + 0.4 * (jnp.log2(p["batch"]) - 6) / 3
    lr = 1.0 * (jnp.log10(p["lr"]) - log_lr_star) ** 2
    depth = 0.02 * (p["layers"] - 6) ** 2 + 0.01 * (p["heads"] - 8) ** 2
    drop = 3.0 * (p["dropout"] - (0.1 + 0.3 * (p["epochs"] - 5) / 95)) ** 2
    wd = 0.1 * (jnp.log10(p["weight_decay"]) + 2) ** 2
    epochs = 0.3 * ((p["epochs"] - 60) / 40) ** 2
    momentum = 0.5 * (p["momentum"] - 0.9) ** 2
    return 0.2 + lr + depth + drop + wd + epochs + momentum


HPO_TRAIN10_OPT = dict(
    lr=10 ** (-3.5),
    batch=64,
    layers=6,
    heads=8,
    dropout=0.1 + 0.3 * 55 / 95,
    weight_decay=1e-2,
    epochs=60,
    momentum=0.9,
    unused_a=0.1,
    unused_b=3,
)

HPO_CAT8_SPACE = {
    "optimizer": hx.CategoricalSpace(("sgd", "momentum", "adam", "adamw")),
    "activation": hx.CategoricalSpace(("relu", "tanh", "gelu", "sigmoid")),
    "schedule": hx.CategoricalSpace(("constant", "cosine", "step")),
    "lr": hx.LogSpace(1e-5, 1.0),
    "weight_decay": hx.LogSpace(1e-6, 1e-1),
    "width": hx.QLogSpace(16, 1024),
    "dropout": hx.LinearSpace(0.0, 0.8),
    "warmup": hx.LinearSpace(0.0, 0.3),
}


def hpo_cat8(p):
    # Each optimizer has its own best learning rate; AdamW wants more weight decay; a
    # cosine schedule tolerates a larger learning rate; sigmoid is slow. Minimum 0.05
    # (AdamW, GELU, cosine).
    o, a, s = p["optimizer"], p["activation"], p["schedule"]
    log_lr_star = jnp.asarray([-1.0, -1.5, -3.0, -3.0])[o] + jnp.asarray([0.0, 0.3, -0.2])[s]
    log_wd_star = jnp.asarray([-4.0, -4.0, -5.0, -2.0])[o]
    lr = (jnp.log10(p["lr"]) - log_lr_star) ** 2
    wd = 0.05 * (jnp.log10(p["weight_decay"]) - log_wd_star) ** 2
    cat = (
        jnp.asarray([0.20, 0.10, 0.05, 0.0])[o]
        + jnp.asarray([0.05, 0.10, 0.0, 0.2])[a]
        + jnp.asarray([0.1, 0.0, 0.05])[s]
    )
    width = 0.1 * (jnp.log2(p["width"]) - 9) ** 2 / 4
    drop = 1.0 * (p["dropout"] - jnp.asarray([0.2, 0.1, 0.3, 0.1])[a]) ** 2
    warm = jnp.where(o >= 2, 1.0, 0.2) * (p["warmup"] - 0.05) ** 2
    return 0.05 + lr + wd + cat + width + drop + warm


HPO_CAT8_OPT = dict(
    optimizer=3,
    activation=2,
    schedule=1,
    lr=10**-2.7,
    weight_decay=1e-2,
    width=512,
    dropout=0.3,
    warmup=0.05,
)

HPO_CAT10_SPACE = {
    "model": hx.CategoricalSpace(("linear", "tree", "mlp", "cnn", "transformer")),
    "loss": hx.CategoricalSpace(("mse", "huber", "l1")),
    "norm": hx.CategoricalSpace(("none", "batch", "layer")),
    "lr": hx.LogSpace(1e-5, 1e-1),
    "reg": hx.LogSpace(1e-6, 10.0),
    "depth": hx.QLinearSpace(1, 10),
    "width": hx.QLogSpace(8, 512),
    "dropout": hx.LinearSpace(0.0, 0.7),
    "huber_delta": hx.LogSpace(0.01, 10.0),
    "unused": hx.LinearSpace(-1.0, 1.0),
}


def hpo_cat10(p):
    # The best model depends on its depth and width; normalisation changes the best
    # learning rate; Huber's delta matters only for the Huber loss. Minimum 0.3
    # (transformer, huber, layer norm).
    m, loss, n = p["model"], p["loss"], p["norm"]
    base = jnp.asarray([0.5, 0.3, 0.15, 0.1, 0.0])[m] + jnp.asarray([0.05, 0.0, 0.08])[loss]
    base = base + jnp.asarray([0.1, 0.03, 0.0])[n] + jnp.where((m == 1) & (n > 0), 0.2, 0.0)
    log_lr_star = jnp.asarray([-2.0, -1.5, -3.0, -3.0, -3.5])[m] + jnp.asarray([0.0, 0.5, 0.2])[n]
    lr = 0.8 * (jnp.log10(p["lr"]) - log_lr_star) ** 2
    depth_star = jnp.asarray([1.0, 6.0, 3.0, 5.0, 6.0])[m]
    depth = 0.02 * (p["depth"] - depth_star) ** 2
    width = jnp.where(m >= 2, 0.05, 0.0) * (jnp.log2(p["width"]) - 8) ** 2
    reg = 0.03 * (jnp.log10(p["reg"]) + 3) ** 2
    drop = jnp.where(m >= 2, 1.0, 0.2) * (p["dropout"] - 0.15) ** 2
    delta = jnp.where(loss == 1, 0.1, 0.0) * jnp.log10(p["huber_delta"]) ** 2
    return 0.3 + base + lr + depth + width + reg + drop + delta


HPO_CAT10_OPT = dict(
    model=4,
    loss=1,
    norm=2,
    lr=10**-3.3,
    reg=1e-3,
    depth=6,
    width=256,
    dropout=0.15,
    huber_delta=1.0,
    unused=0.0,
)

MIXED_SPACE = {
    "lr": hx.LogSpace(1e-5, 1e-1),
    "layers": hx.QLinearSpace(1, 6),
    "width": hx.QLogSpace(8, 1024),
    "dropout": hx.LinearSpace(0.0, 0.5),
}

# -- real tuning tasks (scikit-learn, on the host) ------------------------------------------


@functools.cache
def _dataset(name):
    from sklearn import datasets
    from sklearn.preprocessing import StandardScaler

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _cv_error(model, name, scoring):
    from sklearn.model_selection import KFold, cross_val_score

    X, y = _dataset(name)
    folds = KFold(5, shuffle=True, random_state=0)
    return -float(np.mean(cross_val_score(model, X, y, cv=folds, scoring=scoring)))


def elasticnet_diabetes(c):
    from sklearn.linear_model import ElasticNet

    model = ElasticNet(alpha=c["alpha"], l1_ratio=c["l1_ratio"], max_iter=5000)
    return _cv_error(model, "diabetes", "neg_mean_squared_error") / 1000.0  # MSE in thousands


def svc_breast_cancer(c):
    from sklearn.svm import SVC

    model = SVC(C=c["C"], gamma=c["gamma"], kernel=c["kernel"])
    return 1.0 + _cv_error(model, "breast_cancer", "accuracy")  # error rate


def tree_wine(c):
    from sklearn.tree import DecisionTreeClassifier

    model = DecisionTreeClassifier(
        max_depth=c["max_depth"],
        min_samples_split=c["min_samples_split"],
        min_samples_leaf=c["min_samples_leaf"],
        max_features=c["max_features"],
        criterion=c["criterion"],
        random_state=0,
    )
    return 1.0 + _cv_error(model, "wine", "accuracy")


def knn_digits_small(c):
    # kNN after PCA on the digits' first 600 images (fast): the error rate.
    from sklearn.decomposition import PCA
    from sklearn.model_selection import KFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline

    X, y = _dataset("digits")
    model = make_pipeline(
        PCA(c["components"], whiten=c["whiten"] == "yes", random_state=0),
        KNeighborsClassifier(n_neighbors=c["k"], weights=c["weights"], metric=c["metric"]),
    )
    folds = KFold(5, shuffle=True, random_state=0)
    return 1.0 - float(
        np.mean(cross_val_score(model, X[:600], y[:600], cv=folds, scoring="accuracy"))
    )


def mlp_digits(p):
    from hyperoptax import demo

    return demo.mlp_validation_error(jax.random.PRNGKey(0), p)


# The best of 2000 uniformly random configurations of each real task
# (`python benchmarks/suite.py --reference NAME`); for mlp_digits, 0.0 (the error floor).
REFERENCE = {
    "elasticnet_diabetes": 2.9718031335789816,
    "svc_breast_cancer": 0.015789473684210575,
    "tree_wine": 0.04476190476190478,
    "knn_digits": 0.013333333333333308,
}


def _problems():
    from hyperoptax import demo

    v = _vec
    P = []

    def add(*args, **kw):
        P.append(Problem(*args, **kw))

    def add_spread_noise(name, noise):
        # A `noisy-spread` problem: an earlier one of the same half with `noise` added.
        (base,) = [p for p in P if p.name == name]
        P.append(dataclasses.replace(base, name=f"noisy_{name}", kind="noisy-spread", noise=noise))

    # development half -------------------------------------------------------------------
    add(
        "branin",
        DEV,
        "smooth",
        {"x0": hx.LinearSpace(-5.0, 10.0), "x1": hx.LinearSpace(0.0, 15.0)},
        lambda p: branin_vec(v(p, 2)),
        BRANIN_MIN,
        50,
        x_opt=_at(2, [math.pi, 2.275]),
    )
    add(
        "goldstein_price",
        DEV,
        "ill-conditioned",
        _box(2, -2.0, 2.0),
        lambda p: goldstein_price(v(p, 2)),
        3.0,
        50,
        x_opt=_at(2, [0.0, -1.0]),
    )
    add(
        "hartmann6",
        DEV,
        "multimodal",
        _box(6, 0.0, 1.0),
        lambda p: hartmann6(v(p, 6)),
        -3.322368011415515,
        100,
        x_opt=_at(6, [0.20168952, 0.15001069, 0.47687398, 0.27533243, 0.31165162, 0.65730054]),
    )
    add(
        "rosenbrock4",
        DEV,
        "ill-conditioned",
        _box(4, -2.0, 2.0),
        lambda p: rosenbrock(v(p, 4)),
        0.0,
        100,
        x_opt=_at(4, [1.0] * 4),
    )
    add(
        "ackley5",
        DEV,
        "multimodal",
        _box(5, -5.0, 5.0),
        lambda p: ackley(v(p, 5)),
        0.0,
        100,
        x_opt=_at(5, [0.0] * 5),
    )
    add(
        "levy6",
        DEV,
        "multimodal",
        _box(6, -10.0, 10.0),
        lambda p: levy(v(p, 6)),
        0.0,
        100,
        x_opt=_at(6, [1.0] * 6),
    )
    add(
        "styblinski_tang8",
        DEV,
        "multimodal",
        _box(8, -5.0, 5.0),
        lambda p: styblinski_tang(v(p, 8)),
        8 * ST_MIN,
        120,
        x_opt=_at(8, [ST_X] * 8),
    )
    add(
        "ellipsoid_rot8",
        DEV,
        "ill-conditioned",
        _box(8, -5.0, 5.0),
        lambda p: ellipsoid_rotated(v(p, 8)),
        0.0,
        120,
        x_opt=_at(8, list(_ELL_SHIFT)),
    )
    add(
        "hartmann6_in_40",
        DEV,
        "low-effective-dim",
        _box(40, 0.0, 1.0),
        _compose(hartmann6, [3, 11, 17, 24, 30, 38], 40),
        -3.322368011415515,
        120,
    )
    add(
        "noisy_branin",
        DEV,
        "noisy-high",
        {"x0": hx.LinearSpace(-5.0, 10.0), "x1": hx.LinearSpace(0.0, 15.0)},
        lambda p: branin_vec(v(p, 2)),
        BRANIN_MIN,
        60,
        noise=1.0,
        x_opt=_at(2, [math.pi, 2.275]),
    )
    add(
        "noisy_hartmann6",
        DEV,
        "noisy-low",
        _box(6, 0.0, 1.0),
        lambda p: hartmann6(v(p, 6)),
        -3.322368011415515,
        100,
        noise=0.02,
    )
    add(
        "mixed",
        DEV,
        "hpo",
        MIXED_SPACE,
        mixed,
        0.0,
        60,
        x_opt=dict(lr=10**-2.5, layers=3, width=128, dropout=0.2),
    )
    add("hpo_train12", DEV, "hpo", HPO_TRAIN12_SPACE, hpo_train12, 0.1, 100, x_opt=HPO_TRAIN12_OPT)
    add("hpo_cat8", DEV, "hpo-categorical", HPO_CAT8_SPACE, hpo_cat8, 0.05, 80, x_opt=HPO_CAT8_OPT)
    add("mlp_digits", DEV, "real", demo.SPACE, mlp_digits, 0.0, 40, reference=True, tie=1 / 597)
    add(
        "elasticnet_diabetes",
        DEV,
        "real",
        {"alpha": hx.LogSpace(1e-4, 10.0), "l1_ratio": hx.LinearSpace(0.0, 1.0)},
        elasticnet_diabetes,
        REFERENCE["elasticnet_diabetes"],
        30,
        host=True,
        reference=True,
    )

    add_spread_noise("styblinski_tang8", 27.0)
    add_spread_noise("hpo_train12", 0.28)

    # held-out half ----------------------------------------------------------------------
    add(
        "six_hump_camel",
        HELD_OUT,
        "smooth",
        {"x0": hx.LinearSpace(-3.0, 3.0), "x1": hx.LinearSpace(-2.0, 2.0)},
        lambda p: six_hump_camel(v(p, 2)),
        -1.0316284534898774,
        50,
        x_opt=_at(2, [0.08984201310031806, -0.7126564030207396]),
    )
    add(
        "hartmann3",
        HELD_OUT,
        "smooth",
        _box(3, 0.0, 1.0),
        lambda p: hartmann3(v(p, 3)),
        -3.862779787332663,
        60,
        x_opt=_at(3, [0.11458888122541287, 0.5556488954739371, 0.8525469842172746]),
    )
    add(
        "shekel4",
        HELD_OUT,
        "multimodal",
        _box(4, 0.0, 10.0),
        lambda p: shekel(v(p, 4)),
        -10.536409816692045,
        100,
        x_opt=_at(4, [4.000746531592147, 4.000592934138629, 3.999663398966887, 3.9995098034602354]),
    )
    add(
        "rastrigin4",
        HELD_OUT,
        "multimodal",
        _box(4, -5.12, 5.12),
        lambda p: rastrigin(v(p, 4)),
        0.0,
        100,
        x_opt=_at(4, [0.0] * 4),
    )
    add(
        "ackley10",
        HELD_OUT,
        "multimodal",
        _box(10, -5.0, 5.0),
        lambda p: ackley(v(p, 10)),
        0.0,
        150,
        x_opt=_at(10, [0.0] * 10),
    )
    add(
        "dixon_price10",
        HELD_OUT,
        "ill-conditioned",
        _box(10, -10.0, 10.0),
        lambda p: dixon_price(v(p, 10)),
        0.0,
        120,
        x_opt=_at(10, [2.0 ** (-(2**i - 2) / 2**i) for i in range(1, 11)]),
    )
    add(
        "branin_in_20",
        HELD_OUT,
        "low-effective-dim",
        _box(20, 0.0, 1.0),
        _compose(branin_vec, [5, 14], 20, lo=[-5.0, 0.0], hi=[10.0, 15.0]),
        BRANIN_MIN,
        80,
    )
    add(
        "rosenbrock3_in_30",
        HELD_OUT,
        "low-effective-dim",
        _box(30, 0.0, 1.0),
        _compose(rosenbrock, [2, 13, 27], 30, lo=-2.0, hi=2.0),
        0.0,
        120,
    )
    add(
        "noisy_hartmann3",
        HELD_OUT,
        "noisy-high",
        _box(3, 0.0, 1.0),
        lambda p: hartmann3(v(p, 3)),
        -3.862779787332663,
        60,
        noise=0.3,
    )
    add(
        "noisy_levy4",
        HELD_OUT,
        "noisy-low",
        _box(4, -10.0, 10.0),
        lambda p: levy(v(p, 4)),
        0.0,
        100,
        noise=0.05,
        x_opt=_at(4, [1.0] * 4),
    )
    add(
        "hpo_train10",
        HELD_OUT,
        "hpo",
        HPO_TRAIN10_SPACE,
        hpo_train10,
        0.2,
        100,
        x_opt=HPO_TRAIN10_OPT,
    )
    add(
        "hpo_cat10",
        HELD_OUT,
        "hpo-categorical",
        HPO_CAT10_SPACE,
        hpo_cat10,
        0.3,
        100,
        x_opt=HPO_CAT10_OPT,
    )
    add(
        "svc_breast_cancer",
        HELD_OUT,
        "real",
        {
            "C": hx.LogSpace(1e-3, 1e3),
            "gamma": hx.LogSpace(1e-5, 1.0),
            "kernel": hx.CategoricalSpace(("rbf", "sigmoid")),
        },
        svc_breast_cancer,
        REFERENCE["svc_breast_cancer"],
        40,
        host=True,
        reference=True,
        tie=1 / 569,
    )
    add(
        "tree_wine",
        HELD_OUT,
        "real",
        {
            "max_depth": hx.QLinearSpace(1, 20),
            "min_samples_split": hx.QLinearSpace(2, 40),
            "min_samples_leaf": hx.QLinearSpace(1, 20),
            "max_features": hx.LinearSpace(0.1, 1.0),
            "criterion": hx.CategoricalSpace(("gini", "entropy", "log_loss")),
        },
        tree_wine,
        REFERENCE["tree_wine"],
        50,
        host=True,
        reference=True,
        tie=1 / 178,
    )
    add(
        "knn_digits",
        HELD_OUT,
        "real",
        {
            "k": hx.QLogSpace(1, 100),
            "weights": hx.CategoricalSpace(("uniform", "distance")),
            "metric": hx.CategoricalSpace(("euclidean", "manhattan", "chebyshev")),
            "components": hx.QLogSpace(2, 64),
            "whiten": hx.CategoricalSpace(("no", "yes")),
        },
        knn_digits_small,
        REFERENCE["knn_digits"],
        30,
        host=True,
        reference=True,
        tie=1 / 600,
    )
    add_spread_noise("shekel4", 0.05)
    add_spread_noise("hpo_train10", 0.39)
    return {p.name: p for p in P}


def _compose(fn, positions, d, lo=0.0, hi=1.0):
    lo = np.broadcast_to(np.asarray(lo, float), (len(positions),))
    hi = np.broadcast_to(np.asarray(hi, float), (len(positions),))
    g = _embedded(fn, positions, lo, hi)
    return lambda p: g(_vec(p, d))


PROBLEMS = _problems()
