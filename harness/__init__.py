"""splitdb harness: runs the reference system as real processes, checks it, measures it, reports."""
