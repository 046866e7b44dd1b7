"""An in-memory UserStore (contracts.auth.UserStore)."""

from __future__ import annotations

import itertools

from contracts.auth import AuthError, User


class MemoryUserStore:
    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._by_email: dict[str, tuple[User, str]] = {}

    def add(self, email: str, password_hash: str) -> User:
        if email in self._by_email:
            raise AuthError(f"{email} is already registered")
        user = User(id=str(next(self._ids)), email=email)
        self._by_email[email] = (user, password_hash)
        return user

    def find_by_email(self, email: str) -> tuple[User, str] | None:
        return self._by_email.get(email)

    def get(self, user_id: str) -> User | None:
        return next((u for u, _ in self._by_email.values() if u.id == user_id), None)
