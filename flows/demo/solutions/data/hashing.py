"""Salted password hashing (contracts.auth.PasswordHasher)."""

from __future__ import annotations

import hashlib
import hmac
import os


class SaltedHasher:
    def __init__(self, iterations: int = 10_000) -> None:
        self.iterations = iterations

    def hash(self, password: str) -> str:
        salt = os.urandom(16)
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, self.iterations)
        return f"{salt.hex()}${digest.hex()}"

    def verify(self, password: str, hashed: str) -> bool:
        salt_hex, _, digest_hex = hashed.partition("$")
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt_hex), self.iterations)
        return hmac.compare_digest(digest.hex(), digest_hex)
