"""Export packages at rest (issue 5 §4): chunked AES-GCM, unreadable without the key, tamper-evident."""

import base64
import io
import os
import zipfile

import pytest
from django.core.exceptions import ImproperlyConfigured

from requests import crypto


def _encrypt(tmp_path, data: bytes) -> tuple[bytes, dict]:
    src = tmp_path / "plain"
    src.write_bytes(data)
    out = io.BytesIO()
    info = crypto.encrypt_file(src, out)
    return out.getvalue(), info


def _decrypt(blob: bytes) -> bytes:
    return b"".join(crypto.decrypt_chunks(io.BytesIO(blob)))


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(crypto, "CHUNK_BYTES", 1000)


@pytest.mark.parametrize("size", [0, 1, 999, 1000, 1001, 4000, 4321])
def test_round_trip_at_chunk_boundaries(tmp_path, small_chunks, size):
    data = os.urandom(size)
    blob, info = _encrypt(tmp_path, data)
    assert info["plain_bytes"] == size
    assert info["bytes"] == len(blob)
    assert _decrypt(blob) == data


def test_pm_ix_1_a_zip_is_not_readable_without_the_key(tmp_path, settings):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("data/chat/message.csv", "id,content\n1,hello\n")
    blob, _ = _encrypt(tmp_path, buffer.getvalue())
    assert b"hello" not in blob and b"PK\x03\x04" not in blob
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(blob))
    settings.EXPORT_ENCRYPTION_KEY = base64.urlsafe_b64encode(os.urandom(32)).decode()
    with pytest.raises(crypto.DecryptionError):
        _decrypt(blob)


def test_same_file_twice_gives_different_ciphertexts(tmp_path):
    # A fresh nonce prefix per file: equal packages are not recognisable as equal at rest.
    assert _encrypt(tmp_path, b"same")[0] != _encrypt(tmp_path, b"same")[0]


def test_a_changed_byte_is_detected(tmp_path, small_chunks):
    blob = bytearray(_encrypt(tmp_path, os.urandom(3000))[0])
    blob[crypto.HEADER_BYTES + 1500] ^= 1
    with pytest.raises(crypto.DecryptionError):
        _decrypt(bytes(blob))


def test_a_file_cut_at_a_chunk_boundary_is_detected(tmp_path, small_chunks):
    # Dropping the final chunk leaves a well-formed chunk that was not encrypted as the last one.
    blob, _ = _encrypt(tmp_path, os.urandom(3000))
    cut = crypto.HEADER_BYTES + 2 * (1000 + crypto.TAG_BYTES)
    with pytest.raises(crypto.DecryptionError):
        _decrypt(blob[:cut])


def test_reordered_chunks_are_detected(tmp_path, small_chunks):
    blob, _ = _encrypt(tmp_path, os.urandom(3000))
    size = 1000 + crypto.TAG_BYTES
    head, first, second, rest = (
        blob[: crypto.HEADER_BYTES],
        blob[crypto.HEADER_BYTES : crypto.HEADER_BYTES + size],
        blob[crypto.HEADER_BYTES + size : crypto.HEADER_BYTES + 2 * size],
        blob[crypto.HEADER_BYTES + 2 * size :],
    )
    with pytest.raises(crypto.DecryptionError):
        _decrypt(head + second + first + rest)


def test_not_a_package():
    with pytest.raises(crypto.DecryptionError):
        _decrypt(b"PK\x03\x04 plain zip")


def test_a_bad_key_setting_stops_with_a_clear_error(tmp_path, settings):
    settings.EXPORT_ENCRYPTION_KEY = "too-short"
    with pytest.raises(ImproperlyConfigured):
        _encrypt(tmp_path, b"x")
