"""Moving a system's tables between layouts: one shared file to a file per writer (`splitdb
split`) and back (`splitdb merge`), from a consistent snapshot, verified before anything is put
in place.

- `objects`: what a file holds (tables, indexes, triggers, views) as read from its schema;
- `plan`: which table goes from which file to which, and every problem before anything is written;
- `copy`: the copy itself, into temporary files, under one read snapshot of each source;
- `verify`: rows, content checksums, `integrity_check` and schema, target against source;
- `placing`: temporary names, the manifest of an unfinished migration, renaming into place;
- `migration`: the whole command, and its report.
"""
