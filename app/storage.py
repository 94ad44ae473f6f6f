"""Where media and uploads are kept: one interface, two places (DESIGN "Scaling out").

`MEDIA_STORAGE_URL` chooses:

- empty (the default) or `file:///absolute/folder`: a folder on this server (default `instance/media`);
  fine for one server, since every process of it sees the same disk;
- `s3://bucket/prefix`: S3 or any S3-compatible store, reached through boto3 with the machine's
  credentials (environment, profile or role) and `AWS_ENDPOINT_URL` when set.

Keys are ours (`media/<organisation>/<conversation>/<file>`), checked against a strict pattern so a
key can never leave the folder. Callers keep the content type beside the key; `get` returns both
where the store remembers it. `shared_url` gives a link that works without signing in, for a while,
so that Meta can fetch a file we send by link: an S3 presigned URL, or a signed address of this app.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}(/[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}){0,9}")
CHUNK = 64 * 1024
SHARED_SALT = "switchboard.storage.shared"
SHARED_PATH = "/media/shared/"  # the route of app/media/views.py that serves these links


class StorageError(Exception):
    """The store could not be reached or refused the operation; the reason is plain words."""


class NotStored(StorageError):
    """Nothing is kept under this key."""


@dataclass(frozen=True)
class Stored:
    data: bytes
    content_type: str | None


def check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY.fullmatch(key) or ".." in key:
        raise ValueError(f"not a storage key: {key!r}")
    return key


class FolderStorage:
    def __init__(self, root: Path):
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: bytes, content_type: str | None) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(path.name + ".partial")
            partial.write_bytes(data)
            os.replace(partial, path)  # a reader never sees half a file
        except OSError as exc:
            raise StorageError(f"Could not write the file to the media folder: {exc.strerror or exc}.") from None

    def get(self, key: str) -> Stored:
        try:
            return Stored(self._path(key).read_bytes(), None)
        except FileNotFoundError:
            raise NotStored(key) from None
        except OSError as exc:
            raise StorageError(f"Could not read the file from the media folder: {exc.strerror or exc}.") from None

    def stream(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        if not path.is_file():
            raise NotStored(key)

        def chunks():
            with path.open("rb") as handle:
                while chunk := handle.read(CHUNK):
                    yield chunk
        return chunks()

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"Could not delete the file from the media folder: {exc.strerror or exc}.") from None

    def shared_url(self, key: str, expires_in: int) -> str:
        token = URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SHARED_SALT).dumps(check_key(key))
        return f"{current_app.config['PUBLIC_BASE_URL']}{SHARED_PATH}{token}"  # jobs have no request to build URLs in


class S3Storage:
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None, region: str, timeout: float):
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region,
            config=Config(signature_version="s3v4", connect_timeout=timeout, read_timeout=timeout * 3,
                          retries={"mode": "standard", "total_max_attempts": 3}))

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _failed(self, exc: Exception, doing: str) -> StorageError:
        from botocore.exceptions import ClientError
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return NotStored(doing)
            return StorageError(f"The media store refused to {doing} ({code or 'error'}).")
        return StorageError(f"Could not reach the media store to {doing}: {type(exc).__name__}.")

    def put(self, key: str, data: bytes, content_type: str | None) -> None:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data,
                                   ContentType=content_type or "application/octet-stream")
        except (BotoCoreError, ClientError) as exc:
            raise self._failed(exc, "store the file") from None

    def get(self, key: str) -> Stored:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return Stored(answer["Body"].read(), answer.get("ContentType"))
        except (BotoCoreError, ClientError) as exc:
            raise self._failed(exc, "read the file") from None

    def stream(self, key: str) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except (BotoCoreError, ClientError) as exc:
            raise self._failed(exc, "read the file") from None
        return body.iter_chunks(CHUNK)

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._failed(exc, "delete the file") from None

    def shared_url(self, key: str, expires_in: int) -> str:
        return self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": self._key(key)},
                                                  ExpiresIn=expires_in)


def storage() -> FolderStorage | S3Storage:
    """The app's store, built once per app from MEDIA_STORAGE_URL."""
    extensions = current_app.extensions
    if "media_storage" not in extensions:
        extensions["media_storage"] = from_url(current_app.config.get("MEDIA_STORAGE_URL") or "")
    return extensions["media_storage"]


def from_url(url: str) -> FolderStorage | S3Storage:
    parts = urlsplit(url)
    if not url:
        return FolderStorage(Path(current_app.instance_path) / "media")
    if parts.scheme == "file" and parts.path.startswith("/"):
        return FolderStorage(Path(parts.path))
    if parts.scheme == "s3" and parts.hostname:
        config = current_app.config
        return S3Storage(parts.hostname, parts.path, config.get("AWS_ENDPOINT_URL"),
                         os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                         config.get("PROVIDER_TIMEOUT_SECONDS", 10.0))
    raise RuntimeError("MEDIA_STORAGE_URL must be file:///absolute/folder or s3://bucket/prefix")


def key_from_shared_token(token: str, max_age: int) -> str | None:
    """The key a shared link of the folder store names, or None when forged or expired."""
    try:
        key = URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SHARED_SALT).loads(token, max_age=max_age)
    except (BadSignature, SignatureExpired):
        return None
    try:
        return check_key(key)
    except ValueError:
        return None
