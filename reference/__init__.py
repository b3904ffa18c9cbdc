"""splitdb reference system: the seed's three processes and three databases, built properly."""

from reference.errors import (
    DatabaseMissing,
    FeedError,
    InvalidInput,
    PermissionViolation,
    ReportFormatError,
    ScenarioError,
    SchemaError,
    SplitdbError,
    StatusBoardBusy,
    StatusFileCorrupt,
    TopologyError,
)

__all__ = [
    "DatabaseMissing",
    "FeedError",
    "InvalidInput",
    "PermissionViolation",
    "ReportFormatError",
    "ScenarioError",
    "SchemaError",
    "SplitdbError",
    "StatusBoardBusy",
    "StatusFileCorrupt",
    "TopologyError",
]
