"""Interruption-safe runs: a killed, preempted or requeued run resumes where it stopped.

One concept per module:

- :mod:`kmexp.runs.atomic_io`: checkpoints written in the run directory and renamed into
  place (atomic on every filesystem), the previous good ``last.ckpt`` kept, orphans cleaned;
- :mod:`kmexp.runs.last_checkpoint`: the callback that keeps ``last.ckpt`` the latest state
  (every epoch end, every ``checkpointing.interval_s`` seconds, on a signal);
- :mod:`kmexp.runs.rng_state`: Python, NumPy, torch and CUDA random states in the checkpoint;
- :mod:`kmexp.runs.resumable_loader`: the training data loader's position in the checkpoint;
- :mod:`kmexp.runs.preemption`: SIGTERM / SIGUSR1 / submitit's signal -> save, ``preempted``
  summary, requeue;
- :mod:`kmexp.runs.run_lock`: one process per run directory;
- :mod:`kmexp.runs.resume`: fresh start, automatic resume, finished run or refusal;
- :mod:`kmexp.runs.csv_log`: ``metrics.csv`` continued (not truncated) on resume.
"""
