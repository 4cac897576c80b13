"""Model files: the models folder, GGUF headers, the starter model, downloads, the catalog, and
whether a model fits in memory. Nothing here loads a model (that is `app.core.llm`)."""
