"""The shared core: errors, paths, atomic files, progress, the prompt format, model loading, packaged data and
the one definition of "Sure". It imports nothing else of the project, so ``probes`` can build on it."""
