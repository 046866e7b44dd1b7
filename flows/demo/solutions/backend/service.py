"""The token API (contracts.auth.AuthAPI): register, login, me."""

from __future__ import annotations

import base64
import hashlib
import hmac

from contracts.auth import AuthError, AuthResponse, PasswordHasher, User, UserStore


class TokenAuthAPI:
    def __init__(self, store: UserStore, hasher: PasswordHasher, secret: str) -> None:
        self.store, self.hasher, self._secret = store, hasher, secret.encode()

    def _sign(self, user_id: str) -> str:
        mac = hmac.new(self._secret, user_id.encode(), hashlib.sha256).digest()
        return f"{user_id}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"

    def register(self, email: str, password: str) -> AuthResponse:
        user = self.store.add(email, self.hasher.hash(password))
        return AuthResponse(token=self._sign(user.id), user=user)

    def login(self, email: str, password: str) -> AuthResponse:
        found = self.store.find_by_email(email)
        if found is None or not self.hasher.verify(password, found[1]):
            raise AuthError("invalid email or password")
        return AuthResponse(token=self._sign(found[0].id), user=found[0])

    def me(self, token: str) -> User:
        user_id, _, _ = token.partition(".")
        user = self.store.get(user_id)
        if user is None or not hmac.compare_digest(self._sign(user_id), token):
            raise AuthError("invalid token")
        return user
