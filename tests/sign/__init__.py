"""Tests of commit and summary signatures."""
