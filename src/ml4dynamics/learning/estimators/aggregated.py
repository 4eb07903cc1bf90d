"""``dagger``: the OLS loss on a training set that grows between rounds with the hybrid's own
states, labelled by the exact closure (``ml4dynamics.learning.aggregation``).

Not a regulariser: a different training distribution. It answers the question TR's results
raise — is a closure's failure in rollouts distribution shift? If training on the states the
hybrid visits cures what tangency does not, the shift is real and TR's manifold model is what
falls short; if it does not, the per-step error itself is the problem. It needs the exact
closure of an arbitrary state (rd, ns_channel), which a user of a learned closure often lacks.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

from ml4dynamics.core.validation import require
from ml4dynamics.learning.estimators.least_squares import OLS


@dataclasses.dataclass(frozen=True)
class DAggerConfig:
    kind: Literal["dagger"]
    rounds: int  # round 0 on the data, then rounds − 1 rounds that each add the hybrid's states
    bound: float  # a rollout frame with max|û| > bound · max|u| of the truth is not labelled

    def __post_init__(self) -> None:
        require(
            isinstance(self.rounds, int) and self.rounds >= 2,
            "rounds",
            "must be an integer >= 2 (round 0 trains on the data, later rounds add states)",
            "e.g. 3",
        )
        require(self.bound > 1, "bound", "must be > 1", "e.g. 2 (twice the true maximum)")


class DAgger(OLS):
    kind: ClassVar[str] = "dagger"
    config_class: ClassVar[type] = DAggerConfig

    @property
    def rounds(self) -> int:
        return self.config.rounds
