"""Hybrid simulation: a closure inside its system's solver (rollouts for learning and
evaluation; downstream runs of a registered closure)."""
