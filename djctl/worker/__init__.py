"""The two-process runtime: the worker loop and the executor child that runs jobs."""
