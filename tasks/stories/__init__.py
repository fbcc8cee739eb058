"""Story upkeep: summaries and each team's reading state."""
