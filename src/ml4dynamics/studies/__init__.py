"""Studies built from the library: trials over seeds and λ (sweep), the linear theory, the cost
of a training step, the solver benchmark and the speed-up at matched accuracy."""
