"""Commit and summary signatures: GPG (through the real gpg/gpgv), ed25519 and ostree's
`dummy` test type, and the policy of a remote (which engines a commit must pass before
it is used).

May import `util`, `formats` and `store`. Never `pull` (pull calls us), `boot`, `deploy`,
`health` or `cli`.
"""
