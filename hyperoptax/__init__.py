"""hyperoptax: hyperparameter optimisation in JAX and Equinox."""

from . import acquisition, base, bayesian, gp, grid, kernels, random, spaces
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
from .bayesian import BayesianSearch, BayesianSearchState
from .grid import GridSearch, GridSearchState
from .kernels import RBF, BaseKernel, Matern
from .random import RandomSearch
from .spaces import DiscreteSpace, LinearSpace, LogSpace, QLinearSpace, QLogSpace, Space

__version__ = "0.1.0"

__all__ = [
    "BayesianSearch",
    "BayesianSearchState",
    "GridSearch",
    "GridSearchState",
    "RandomSearch",
    "Optimizer",
    "OptimizerState",
    "Space",
    "LinearSpace",
    "LogSpace",
    "QLinearSpace",
    "QLogSpace",
    "DiscreteSpace",
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
]
