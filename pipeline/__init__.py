"""Reproducible MNIST classifier pipeline: DVC stages, Keras models, MLflow tracking."""
