"""Learning a closure: estimators (OLS, TR and the others), the training loop, the manifold
model behind the tangent penalty, and data aggregation (DAgger)."""
