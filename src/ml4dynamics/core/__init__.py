"""What every layer stands on: errors and validation, registries by discovery, atomic writes,
the workspace layout, stage outputs, provenance and MLflow tracking. Imports nothing above it."""
