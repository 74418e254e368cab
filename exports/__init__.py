"""The export toolkit: warehouse engines, writers, storage backends. Knows nothing of queries or HTTP."""
