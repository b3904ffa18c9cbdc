"""Running scenarios: real processes under a supervisor, load, faults, then checks and metrics."""
