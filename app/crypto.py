"""Encryption of stored secrets: Fernet with several keys so keys can rotate.

The first key of ENCRYPTION_KEYS encrypts; every key decrypts.
"""
import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app


class Vault:
    def __init__(self, keys: str):
        parsed = [k.strip() for k in keys.split(",") if k.strip()]
        if not parsed:
            raise RuntimeError("ENCRYPTION_KEYS holds no key")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in parsed])
        except (ValueError, TypeError) as exc:
            raise RuntimeError("ENCRYPTION_KEYS holds a value that is not a Fernet key") from exc

    def encrypt_json(self, value: dict) -> str:
        return self._fernet.encrypt(json.dumps(value, sort_keys=True).encode()).decode()

    def decrypt_json(self, token: str | None) -> dict:
        if not token:
            return {}
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise RuntimeError("A stored secret cannot be decrypted with any key in ENCRYPTION_KEYS") from exc

    def rotate(self, token: str) -> str:
        return self._fernet.rotate(token.encode()).decode()


def vault() -> Vault:
    return current_app.extensions["vault"]
