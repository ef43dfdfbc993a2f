"""The README demo: seed incidents end to end on embedded defaults."""
