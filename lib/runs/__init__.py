"""The run store: SQLite in a runs folder with checkpoints beside it. Trainers append status and metrics; pages and commands only read. Views of a run for the pages live here too."""
