"""ML4Dynamics: machine-learned closures for hybrid numerical simulation.

Dtype policy, decided once for the whole package: every solver runs in float64. JAX silently
downcasts to float32 unless x64 is enabled, so importing the package enables it: directly if JAX
is already imported, otherwise through ``JAX_ENABLE_X64``, which JAX reads when it is imported.
(Importing JAX here would cost seconds on every ``ml4d --help``.) The environment variable also
reaches the subprocesses we start, so stages run under the same policy.
``tests/test_dtype_policy.py`` holds the package to this.
"""

import os
import sys
from importlib.metadata import PackageNotFoundError, version

if "jax" in sys.modules:
    sys.modules["jax"].config.update("jax_enable_x64", True)
else:
    os.environ["JAX_ENABLE_X64"] = "true"

try:
    __version__ = version("ml4dynamics")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
