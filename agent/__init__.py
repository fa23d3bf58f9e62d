"""Judgement: value analysis, conflict, constraints, clarification policy and LLM backends.

Nothing here imports ``graphs``, ``memory`` or ``ui``; every input (embeddings, norms,
constraint books) is handed in, so each judgement is testable on its own.
"""
