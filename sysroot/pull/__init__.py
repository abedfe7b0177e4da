"""Fetching from remote repositories: HTTP fetching, pulls (remotes: store.remotes)."""
