"""splitdb reference system: the seed's three processes and three databases, built properly."""

from reference.errors import (
    FeedError,
    PermissionViolation,
    SchemaError,
    SplitdbError,
    StatusFileCorrupt,
    TopologyError,
)

__all__ = [
    "FeedError",
    "PermissionViolation",
    "SchemaError",
    "SplitdbError",
    "StatusFileCorrupt",
    "TopologyError",
]
