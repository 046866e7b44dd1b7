import unittest

from auth_db.hashing import SaltedHasher
from auth_db.store import MemoryUserStore


class DataTests(unittest.TestCase):
    def test_store_round_trip(self) -> None:
        store = MemoryUserStore()
        user = store.add("a@example.com", "h")
        self.assertEqual(store.get(user.id), user)
        self.assertEqual(store.find_by_email("a@example.com"), (user, "h"))

    def test_hash_verifies_only_the_password(self) -> None:
        hasher = SaltedHasher(iterations=1000)
        hashed = hasher.hash("pw")
        self.assertTrue(hasher.verify("pw", hashed))
        self.assertFalse(hasher.verify("other", hashed))
