"""Inference: visitors' jobs computed in batches on engine threads, within a deadline, fairly.

- :mod:`.jobs`: a job, its result, and the engine call that computes a list of them;
- :mod:`.lanes`: the queue of jobs waiting for a thread;
- :mod:`.batcher`: dispatch of frame batches (fast lane) and single slow jobs onto the threads;
- :mod:`.workers`: the engine threads, each call bounded by the compute deadline, a hung thread replaced;
- :mod:`.usage`: each visitor's recent engine time, against its fair share.
"""
