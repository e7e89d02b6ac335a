"""Client IDs are random version-4 UUIDs."""

from __future__ import annotations

import uuid

from neoevents.ids import IdGenerator


def test_ids_are_unique_version_4_uuids() -> None:
    gen = IdGenerator()
    ids = [gen.new() for _ in range(5000)]  # several refills of the randomness buffer
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_every_free_bit_varies() -> None:
    gen = IdGenerator()
    values = [uuid.UUID(gen.new()).int for _ in range(2000)]
    fixed = (0xF << 76) | (0x3 << 62)  # version nibble and variant bits
    varied = 0
    for v in values:
        varied |= v ^ values[0]
    assert varied == ((1 << 128) - 1) & ~fixed
