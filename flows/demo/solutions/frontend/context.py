"""The client-side session (contracts.auth.AuthContext)."""

from __future__ import annotations

from contracts.auth import AuthAPI, User


class SessionContext:
    def __init__(self, api: AuthAPI) -> None:
        self.api = api
        self.user: User | None = None
        self.token: str | None = None

    def login(self, email: str, password: str) -> None:
        response = self.api.login(email, password)
        self.user, self.token = response.user, response.token

    def register(self, email: str, password: str) -> None:
        response = self.api.register(email, password)
        self.user, self.token = response.user, response.token

    def logout(self) -> None:
        self.user = self.token = None
