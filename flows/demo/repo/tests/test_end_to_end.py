"""The whole auth flow across the three clusters: passes only once all three are integrated."""

import unittest

from auth_api.service import TokenAuthAPI
from auth_db.hashing import SaltedHasher
from auth_db.store import MemoryUserStore
from auth_ui.context import SessionContext
from auth_ui.forms import LoginForm, RegisterForm
from contracts.auth import AuthError


class EndToEnd(unittest.TestCase):
    def setUp(self) -> None:
        self.api = TokenAuthAPI(MemoryUserStore(), SaltedHasher(), secret="demo-secret")
        self.session = SessionContext(self.api)

    def test_register_login_me(self) -> None:
        RegisterForm(self.session).submit("ada@example.com", "correct horse")
        self.session.logout()
        self.assertIsNone(self.session.user)
        message = LoginForm(self.session).submit("ada@example.com", "correct horse")
        self.assertEqual(message, "Welcome, ada@example.com")
        assert self.session.user is not None
        self.assertEqual(self.api.me(self.session.token or "").email, "ada@example.com")

    def test_wrong_password_is_refused(self) -> None:
        RegisterForm(self.session).submit("bob@example.com", "s3cret-pass")
        self.assertEqual(LoginForm(self.session).submit("bob@example.com", "nope"), "Invalid email or password")
        with self.assertRaises(AuthError):
            self.api.me("forged.token")


if __name__ == "__main__":
    unittest.main()
