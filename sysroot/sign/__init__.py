"""Commit and summary signatures: GPG (through the real gpg/gpgv) and ed25519."""
