"""A library folder and what fills and reads it: the embedder, the LanceDB store and its write
lock, ingestion, and hybrid search."""
