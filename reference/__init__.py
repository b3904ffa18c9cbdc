"""splitdb reference system: the seed's three processes and three databases, built properly."""

from reference.errors import (
    DatabaseMissing,
    FeedError,
    PermissionViolation,
    SchemaError,
    SplitdbError,
    StatusBoardBusy,
    StatusFileCorrupt,
    TopologyError,
)

__all__ = [
    "DatabaseMissing",
    "FeedError",
    "PermissionViolation",
    "SchemaError",
    "SplitdbError",
    "StatusBoardBusy",
    "StatusFileCorrupt",
    "TopologyError",
]
