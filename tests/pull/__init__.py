"""Tests of remotes and pulling."""
