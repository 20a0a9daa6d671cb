"""Inference: visitors' jobs computed in batches on engine threads.

- :mod:`.jobs`: a job, its result, and the engine call that computes a list of them;
- :mod:`.lanes`: the queue of jobs waiting for a worker;
- :mod:`.batcher`: dispatch of batches (fast lane) and single slow jobs onto the worker threads;
- :mod:`.processes`: engine child processes (``ENGINE_PROCESSES``).
"""
