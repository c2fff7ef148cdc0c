"""StackSet operations with AWS timing, concurrency and per-account failure."""
