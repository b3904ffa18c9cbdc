"""splitdb reference system: the seed's three processes and three databases, built properly."""

from reference.errors import (
    ComparisonError,
    CrashPointError,
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
    "CrashPointError",
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
