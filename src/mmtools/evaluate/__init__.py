"""Evaluation: retrieval (Recall@K, ranks) on embeddings or on models."""
