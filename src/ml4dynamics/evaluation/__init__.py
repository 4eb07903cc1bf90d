"""A-posteriori evaluation: un-nudged hybrid rollouts scored against the true trajectories.

- ``config.py``: params.yaml ``evaluate`` (the blow-up bound, the report time);
- ``metrics.py``: the definitions — error, correlation, blow-up, shift — frame by frame;
- ``scoring.py``: one split's rollouts scored (``score_split``);
- ``baselines.py``: the ablation and the coarse solver alone;
- ``rollouts.py``: a closure rolled out on every split and scored (``evaluate_closure``);
- ``result.py``: the typed result (``EvaluationResult``), its score and headline;
- ``spectrum.py``, ``shift_correlation.py``: the spectrum error; shift against error.
"""
