"""splitdb reference system: the seed's three processes and three databases, built properly."""

from reference.errors import (
    ComparisonError,
    DatabaseMissing,
    FeedError,
    InvalidInput,
    PermissionViolation,
    ReportFormatError,
    ScenarioError,
    SchemaError,
    ScriptError,
    SplitdbError,
    StatusBoardBusy,
    StatusFileCorrupt,
    ThresholdError,
    TopologyError,
)

__all__ = [
    "ComparisonError",
    "DatabaseMissing",
    "FeedError",
    "InvalidInput",
    "PermissionViolation",
    "ReportFormatError",
    "ScenarioError",
    "SchemaError",
    "ScriptError",
    "SplitdbError",
    "StatusBoardBusy",
    "StatusFileCorrupt",
    "ThresholdError",
    "TopologyError",
]
