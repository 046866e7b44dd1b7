"""The auth system's interface contract, committed before any cluster starts.

Every cluster implements against these types; none of them may edit this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class User:
    id: str
    email: str


@dataclass(frozen=True)
class AuthResponse:
    token: str
    user: User


class AuthError(Exception):
    """Raised for a bad login, a duplicate registration or an invalid token."""


class UserStore(Protocol):
    """Data cluster provides: persistence of users and their password hashes."""

    def add(self, email: str, password_hash: str) -> User: ...
    def find_by_email(self, email: str) -> tuple[User, str] | None: ...
    def get(self, user_id: str) -> User | None: ...


class PasswordHasher(Protocol):
    """Data cluster provides: salted password hashing."""

    def hash(self, password: str) -> str: ...
    def verify(self, password: str, hashed: str) -> bool: ...


class AuthAPI(Protocol):
    """Backend cluster provides: POST /register, POST /login, GET /me."""

    def register(self, email: str, password: str) -> AuthResponse: ...
    def login(self, email: str, password: str) -> AuthResponse: ...
    def me(self, token: str) -> User: ...


class AuthContext(Protocol):
    """Frontend cluster provides: the client-side session that forms talk to."""

    user: User | None

    def login(self, email: str, password: str) -> None: ...
    def logout(self) -> None: ...
