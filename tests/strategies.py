"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

from datetime import datetime, time, timezone

from hypothesis import strategies as st

#: Command names worth trying: registered ones, near misses and junk.
commandNames = st.one_of(
    st.sampled_from([b"auth", b"capabilities", b"ping", b"explode", b"Auth", b"PING",
                     b"createDatabaseConfig", b"executeBackup", b"StartTLS"]),
    st.binary(min_size=1, max_size=80),
)

#: AMP keys are 1 to 255 bytes.
boxKeys = st.one_of(
    st.sampled_from([b"_command", b"_ask", b"_answer", b"_error", b"_error_code",
                     b"_error_description", b"requestId", b"clientId", b"secret",
                     b"license", b"apiVersion", b"count"]),
    st.binary(min_size=1, max_size=255),
)

#: Values from empty to the AMP maximum of 65,535 bytes.
boxValues = st.one_of(
    st.binary(max_size=64),
    st.integers(min_value=60_000, max_value=65_535).map(lambda n: b"v" * n),
    st.sampled_from([b"1", b"-1", b"0", b"99", b"x" * 255, b"\x00", b"[]", b"{}"]),
)


@st.composite
def boxes(draw: st.DrawFn) -> dict[bytes, bytes]:
    """A box that often looks like a command, sometimes like nothing at all."""
    box = draw(st.dictionaries(boxKeys, boxValues, max_size=8))
    if draw(st.booleans()):
        box[b"_command"] = draw(commandNames)
        if draw(st.booleans()):
            box[b"_ask"] = draw(st.sampled_from([b"1", b"2", b"ff", b"x" * 40]))
    return box


@st.composite
def oversizeStreams(draw: st.DrawFn) -> bytes:
    """
    One box past the pre-auth limits, by bytes or by keys, ended or not,
    possibly followed by more: the server must drop it while it is read.
    """
    command = draw(commandNames)
    if draw(st.booleans()):
        keys, value = draw(st.integers(3, 40)), b"v" * draw(st.integers(30_000, 65_535))
    else:
        keys, value = draw(st.integers(16, 200)), draw(st.binary(max_size=16))
    box = {b"_command": command, b"_ask": b"1"}
    box |= {b"k%d" % index: value for index in range(keys)}
    stream = encodeBox(box)
    if not draw(st.booleans()):
        stream = stream[:-2]  # never ended
    return stream + draw(st.binary(max_size=256))


def encodeBox(box: dict[bytes, bytes]) -> bytes:
    """The AMP wire form of C{box} (keys and values within the format's limits)."""
    out = bytearray()
    for key, value in box.items():
        out += len(key).to_bytes(2, "big") + key + len(value).to_bytes(2, "big") + value
    return bytes(out + b"\x00\x00")


#: Byte streams that may not even be AMP.
rawStreams = st.one_of(
    st.binary(max_size=2048),
    st.lists(boxes(), max_size=3).map(lambda bs: b"".join(encodeBox(b) for b in bs)),
)


# Schedules (backupremote.client.schedules)

#: Zones with every kind of clock change: none, 1 h both ways, 30 min
#: (Lord Howe), offsets in quarter hours (Chatham, Kathmandu), a southern
#: hemisphere DST that ended (Sao Paulo, 2019), a negative DST (Dublin).
scheduleZones = st.sampled_from([
    "UTC", "Europe/Berlin", "America/Sao_Paulo", "Australia/Lord_Howe",
    "America/New_York", "Pacific/Chatham", "Asia/Kathmandu", "Europe/Dublin",
    "America/St_Johns", "Australia/Adelaide",
])


#: Instants between 2015 and 2035, whole seconds or not.
scheduleInstants = st.datetimes(
    min_value=datetime(2015, 1, 1), max_value=datetime(2035, 1, 1),
).map(lambda value: value.replace(tzinfo=timezone.utc))

#: Wall times in whole minutes, crowded around the usual DST hours (0-3).
wallTimes = st.builds(
    time,
    st.one_of(st.integers(0, 3), st.integers(0, 23)),
    st.sampled_from([0, 15, 30, 45]) | st.integers(0, 59),
)
