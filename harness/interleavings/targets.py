"""The outcomes `splitdb search` can look for, by target name.

Its own module, with nothing behind it, so the command line can offer the names without loading
the search (hypothesis, the actors, the script model).
"""

from __future__ import annotations

TARGETS: dict[str, frozenset[str]] = {
    "contention": frozenset({"busy", "busy_snapshot", "locked"}),
    "busy": frozenset({"busy"}),
    "busy_snapshot": frozenset({"busy_snapshot"}),
    "locked": frozenset({"locked"}),
}
