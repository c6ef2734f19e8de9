"""What users see: the terminal's tables and progress, the report, the dashboard's notes, the
exported config."""
