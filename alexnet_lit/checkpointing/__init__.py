"""Runs that survive: exact resume, checkpoints written whole and periodically, preemption
(SIGTERM, SLURM requeue), one job to a run folder, and the CSV log that appends on resume."""
