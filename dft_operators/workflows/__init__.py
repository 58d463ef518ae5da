"""End-to-end workflows that tie data, models and training together for each family of models."""
