"""Results: the typed report, its samples and statistics, comparison and rendering.

Nothing here imports the process-running code (`harness.runs`, `harness.interleavings`):
a report is read and compared on a machine that never ran it. tests/test_architecture.py
holds this rule."""
