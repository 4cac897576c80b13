"""What every room of the engine stands on: folders and resources, logging, memory, units, file
helpers. Imports nothing else from app."""
