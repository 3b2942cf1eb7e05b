"""hyperoptax inside other tuning engines (each needs its engine installed)."""
