"""Captions and answers: generators of every supported family (mmtools.caption.families), loaded by name
(loading), run over image sources (pipeline), trained by the shared engine (training) and scored (evaluate,
metrics)."""
