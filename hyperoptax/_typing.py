"""Runtime shape and type checks for the public API (jaxtyping + beartype)."""

from beartype import beartype
from jaxtyping import jaxtyped

# A wrong type or shape raises a `TypeCheckError` (a `TypeError`) that names the
# argument, shows its value's shape and dtype, and the expected annotation.
typecheck = jaxtyped(typechecker=beartype)
