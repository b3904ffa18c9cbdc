"""The exit codes of `splitdb`, defined here and nowhere else.

0: the command did what it was asked and every check passed; 1: it ran, and a check or a
comparison failed (or a process died); 2: bad input (a flag, a file, a path), nothing was run;
130: interrupted (Ctrl-C), as a shell reports a process SIGINT ended.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
