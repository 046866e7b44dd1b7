"""LoginForm and RegisterForm: validate input, talk to the session, answer in plain words."""

from __future__ import annotations

from auth_ui.context import SessionContext
from contracts.auth import AuthError


class LoginForm:
    def __init__(self, session: SessionContext) -> None:
        self.session = session

    def submit(self, email: str, password: str) -> str:
        try:
            self.session.login(email.strip(), password)
        except AuthError:
            return "Invalid email or password"
        return f"Welcome, {email.strip()}"


class RegisterForm:
    def __init__(self, session: SessionContext) -> None:
        self.session = session

    def submit(self, email: str, password: str) -> str:
        if "@" not in email or len(password) < 8:
            return "Enter an email and a password of at least 8 characters"
        try:
            self.session.register(email.strip(), password)
        except AuthError as exc:
            return str(exc)
        return f"Registered {email.strip()}"
