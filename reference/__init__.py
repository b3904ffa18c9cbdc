"""splitdb reference system: the seed's three processes and three databases, built properly."""

from reference.errors import (
    CrashPointError,
    CycleFailed,
    DatabaseMissing,
    DatabaseUnavailable,
    FeedApiError,
    FeedError,
    InvalidInput,
    PermissionViolation,
    SchemaError,
    SplitdbError,
    StateUnavailable,
    StatusBoardBusy,
    StatusFileCorrupt,
    TopologyError,
    UnknownSymbol,
)

__all__ = [
    "CrashPointError",
    "CycleFailed",
    "DatabaseMissing",
    "DatabaseUnavailable",
    "FeedApiError",
    "FeedError",
    "InvalidInput",
    "PermissionViolation",
    "SchemaError",
    "SplitdbError",
    "StateUnavailable",
    "StatusBoardBusy",
    "StatusFileCorrupt",
    "TopologyError",
    "UnknownSymbol",
]
