"""Export packages are encrypted at rest (issue 5 §4): whoever reads the storage bucket or a backup of it
without `EXPORT_ENCRYPTION_KEY` gets no readable ZIP.

AES-256-GCM cannot encrypt a large file in one call without holding it in memory, and a single GCM message
is limited to ~64 GiB anyway, so the file is cut into chunks, each its own GCM message (the "STREAM"
construction of Hoang, Reyhanitabar, Rogaway and Vizár, as in Tink and age):

    header   = MAGIC (4 bytes) || nonce prefix (7 random bytes, new for every file)
    chunk i  = AES-GCM(key, nonce = prefix || i as 4 bytes big-endian || last flag (1 byte), plaintext, aad = header)

The counter in the nonce fixes each chunk's position (chunks cannot be reordered or spliced in from another
file, whose prefix differs), the last flag makes cutting the file short detectable (the new last chunk was
not encrypted as the last), and the header as associated data ties the chunks to it. With a random 56-bit
prefix per file, a nonce repeats only if two files draw the same prefix: fine for a few million packages
under one key. Rotating the key: packages live 7 days, so a new key in the environment only has to wait
for the old packages to expire.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

MAGIC = b"PXE1"
PREFIX_BYTES = 7
HEADER_BYTES = len(MAGIC) + PREFIX_BYTES
CHUNK_BYTES = 1024 * 1024  # plaintext per chunk: large enough that the 16-byte tags cost nothing
TAG_BYTES = 16
MAX_CHUNKS = 2**32  # the counter's 4 bytes


class DecryptionError(Exception):
    """The file is not an export package encrypted with this key, or it was changed or cut short."""


def _key() -> bytes:
    raw = settings.EXPORT_ENCRYPTION_KEY
    try:
        key = base64.urlsafe_b64decode(raw)
    except (binascii.Error, ValueError, TypeError):
        key = b""
    if len(key) != 32:
        raise ImproperlyConfigured("EXPORT_ENCRYPTION_KEY must be the URL-safe base64 of 32 random bytes.")
    return key


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= MAX_CHUNKS:
        raise ValueError("File too large for one export package.")
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def encrypt_file(src_path, dst_file: BinaryIO, *, on_chunk: Callable[[], None] | None = None) -> dict:
    """Encrypt the file at `src_path` into the writable binary `dst_file`, one chunk in memory at a time,
    calling `on_chunk` before each (an export's lease heartbeat: a large package takes a while).

    Returns {"plain_bytes", "plain_sha256", "bytes"}: the plaintext's size and digest (read in the same
    pass, so the caller need not read the file twice) and the size written."""
    aead = AESGCM(_key())
    header = MAGIC + os.urandom(PREFIX_BYTES)
    prefix = header[len(MAGIC) :]
    digest = hashlib.sha256()
    dst_file.write(header)
    written = len(header)
    plain = 0
    with open(src_path, "rb") as src:
        chunk = src.read(CHUNK_BYTES)
        counter = 0
        while True:
            # Read one ahead: the last chunk is only known as last once the next read comes back empty.
            following = src.read(CHUNK_BYTES) if chunk else b""
            last = not following
            if on_chunk is not None:
                on_chunk()
            digest.update(chunk)
            plain += len(chunk)
            sealed = aead.encrypt(_nonce(prefix, counter, last), chunk, header)
            dst_file.write(sealed)
            written += len(sealed)
            if last:
                break
            chunk, counter = following, counter + 1
    return {"plain_bytes": plain, "plain_sha256": digest.hexdigest(), "bytes": written}


def decrypt_chunks(file: BinaryIO) -> Iterator[bytes]:
    """The plaintext of an encrypted package, chunk by chunk (at most CHUNK_BYTES each).

    Raises DecryptionError on a wrong key, a changed byte, reordered chunks or a file cut short. A chunk
    is only yielded once its tag checked, but a caller streaming to a client has sent the earlier chunks
    by the time a later one fails: the download then ends with an error rather than a complete file."""
    aead = AESGCM(_key())
    header = file.read(HEADER_BYTES)
    if len(header) != HEADER_BYTES or not header.startswith(MAGIC):
        raise DecryptionError("Not an encrypted export package.")
    prefix = header[len(MAGIC) :]
    sealed_size = CHUNK_BYTES + TAG_BYTES
    sealed = file.read(sealed_size)
    counter = 0
    while True:
        following = file.read(sealed_size) if len(sealed) == sealed_size else b""
        last = not following
        try:
            yield aead.decrypt(_nonce(prefix, counter, last), sealed, header)
        except InvalidTag:
            raise DecryptionError("The package does not decrypt with this key, or it was changed or cut short.") from None
        if last:
            return
        sealed, counter = following, counter + 1
