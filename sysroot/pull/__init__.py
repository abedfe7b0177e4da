"""Fetching from remote repositories: remote configuration, HTTP fetching, pulls."""
