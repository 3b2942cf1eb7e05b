"""Warnings attributed to the line of the user's code that called into the library.

A warning's `stacklevel` names the frame it is shown at. A fixed level is wrong for
most of the library's warnings: one raised inside `optimize_host` sits below a varying
number of the library's own frames, and the public methods are reached through
Equinox's bound-method wrapper and the jaxtyping and beartype checks, so a fixed level
showed the warning at a line of `hyperoptax/base.py` or of those packages. `warn` counts the
frames instead, up to the first one outside the library and the packages it is called
through (Python 3.12's `skip_file_prefixes` does this; 3.11 lacks it).
"""

from __future__ import annotations

import os
import sys
import warnings

import equinox
import jax
import jaxtyping

__all__ = ["warn"]

# The packages' directories, and the wrappers beartype compiles (their code has no file).
_SKIPPED = tuple(
    os.path.dirname(os.path.abspath(module.__file__)) + os.sep
    for module in (sys.modules[__package__], equinox, jax, jaxtyping)
    if module.__file__ is not None
) + ("<@beartype(",)


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """`warnings.warn(message, category)` shown at the first caller outside the library
    (at the caller of `warn` when every frame is inside it)."""
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_SKIPPED):
        frame, level = frame.f_back, level + 1
    if frame.f_code.co_filename.startswith(_SKIPPED):
        level = 2
    warnings.warn(message, category, stacklevel=level)
