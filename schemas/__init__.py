"""JSON Schema files (draft 2020-12) for every file the toolkit writes."""
