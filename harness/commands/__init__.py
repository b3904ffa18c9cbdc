"""The command layer: one module per `splitdb` command, each importing its domain lazily."""
