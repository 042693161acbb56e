"""Core services: errors and exit codes, project file, secrets, state store, logging, workspace."""
