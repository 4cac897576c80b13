"""Cited answers: the answer chain (`answers`), prompt templates, and the chat store."""
