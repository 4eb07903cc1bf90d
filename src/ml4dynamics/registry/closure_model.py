"""MLflow models-from-code: a registered closure as a pyfunc model.

MLflow runs this file when the model is loaded; ``set_model`` hands it the model object. The
artifact ``closure`` is an exported closure directory (Orbax ``params/`` and ``model.json``, which
names the architecture and the system), so loading rebuilds exactly the network that was trained.

``predict(states)`` takes a batch of states ``(B, *state_shape)`` as float64 (the signature
enforces the shape) and returns the closure ``y`` for each, shape ``(B, *closure_shape)``.
"""

from __future__ import annotations

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class ClosureModel(PythonModel):
    def load_context(self, context) -> None:
        import jax

        from ml4dynamics.registry.packaging import load_closure_dir

        self.model, self.system, self.meta = load_closure_dir(context.artifacts["closure"])
        self._apply = jax.jit(lambda u: self.model(u))

    # an ndarray hint: MLflow infers nothing from it (the signature stays the explicit one) and
    # stops advising type hints at every load
    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        states = np.asarray(model_input, dtype=np.float64)
        shape = tuple(self.system.state_shape)
        if states.shape[1:] != shape:
            raise ValueError(
                f"expected states of shape (batch, {', '.join(map(str, shape))}) for "
                f"{self.system.name}, got {states.shape}"
            )
        return np.asarray(self._apply(states))


mlflow.models.set_model(ClosureModel())
