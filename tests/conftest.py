import jax

# Strictness: implicit rank promotion is a bug source; the library must not rely on it.
jax.config.update("jax_numpy_rank_promotion", "raise")
