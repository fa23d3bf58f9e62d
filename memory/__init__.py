"""Persistence: norm packs and their Chroma index, checkpoints, transcripts and user profiles. Knows no graph and no screen."""
