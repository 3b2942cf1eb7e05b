"""hyperoptax: hyperparameter optimisation in JAX and Equinox."""

from .acquisition import (
    EI,
    PI,
    UCB,
    BaseAcquisition,
    BaseHallucination,
    ConstantHallucination,
    MeanHallucination,
    SampleHallucination,
    UCBHallucination,
)
from .base import Optimizer, OptimizerState
from .bayesian import BayesianSearch, BayesianSearchState, recommended
from .checkpoint import load_state, save_state
from .grid import GridSearch, GridSearchState
from .host import evaluate_configs
from .hyperband import Hyperband, HyperbandState, SuccessiveHalving
from .kernels import RBF, BaseKernel, Matern
from .random import RandomSearch
from .spaces import (
    CategoricalSpace,
    DiscreteSpace,
    LinearSpace,
    LogSpace,
    QLinearSpace,
    QLogSpace,
    Space,
    from_configs,
    to_configs,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    # `hx.plot` imports matplotlib, an optional dependency: only when it is first used.
    if name == "plot":
        import importlib

        return importlib.import_module(".plot", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BayesianSearch",
    "BayesianSearchState",
    "recommended",
    "GridSearch",
    "GridSearchState",
    "RandomSearch",
    "Hyperband",
    "HyperbandState",
    "SuccessiveHalving",
    "Optimizer",
    "OptimizerState",
    "Space",
    "LinearSpace",
    "LogSpace",
    "QLinearSpace",
    "QLogSpace",
    "DiscreteSpace",
    "CategoricalSpace",
    "BaseAcquisition",
    "EI",
    "PI",
    "UCB",
    "BaseHallucination",
    "MeanHallucination",
    "SampleHallucination",
    "UCBHallucination",
    "ConstantHallucination",
    "BaseKernel",
    "Matern",
    "RBF",
    "save_state",
    "load_state",
    "to_configs",
    "from_configs",
    "evaluate_configs",
]
