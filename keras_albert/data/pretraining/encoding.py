"""tf.train.Example in protobuf wire format, and TFRecord framing, written by hand so that workers never import
TensorFlow.

Example{features=1: Features{feature=1: map<string, Feature>}}; map entry {key=1, value=2};
Feature{float_list=2: FloatList{value=1 packed float}, int64_list=3: Int64List{value=1 packed varint}}.
A TFRecord is the record's length (uint64), the masked CRC-32C of those 8 bytes, the record, and the masked CRC-32C
of the record, all little-endian. The CRCs are google-crc32c's: the compiled builder calls the C function of the
library google-crc32c runs on (`native_crc32c_address`); where that is not found, and for the NumPy builder,
`fill_checksums` computes them in Python, for a whole task's records at once.
"""

import ctypes
import ctypes.util
import functools
import glob
import os

import google_crc32c
import numpy as np

crc32c = google_crc32c.value

INT64, FLOAT = b"\x1a", b"\x12"
HEADER_BYTES = 12  # length and its CRC
FOOTER_BYTES = 4  # the record's CRC
_CRC_MASK_DELTA = 0xA282EAD8


@functools.lru_cache(maxsize=1 << 16)
def varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@functools.cache
def entry_prefix(name, kind, payload_length):
    """The bytes of a Features map entry up to its packed payload of `payload_length` bytes."""
    key = name.encode()
    value_list = b"\x0a" + varint(payload_length)
    feature = kind + varint(len(value_list) + payload_length) + value_list
    entry_length = 1 + len(varint(len(key))) + len(key) + 1 + len(varint(len(feature) + payload_length))
    entry_length += len(feature) + payload_length
    return (
        b"\x0a"
        + varint(entry_length)
        + b"\x0a"
        + varint(len(key))
        + key
        + b"\x12"
        + varint(len(feature) + payload_length)
        + feature
    )


def fixed_entries(name, kind, matrix):
    """Map entries for rows of a uint8 matrix that already is the packed payload (0/1 int64 varints, float32s)."""
    matrix = np.ascontiguousarray(matrix)
    width = matrix.shape[1]
    prefix = entry_prefix(name, kind, width)
    data = matrix.tobytes()
    return [prefix + data[start : start + width] for start in range(0, len(data), width)]


def varint_entries(name, matrix, lengths=None, width=None):
    """Map entries for rows of a non-negative integer matrix, packed as protobuf varints for all rows at once.

    With `lengths`, row r holds `lengths[r]` values followed by zeros up to `width` (padding, one byte each).
    """
    rows = matrix.shape[0]
    if not rows:
        return []
    largest = int(matrix.max())
    if lengths is None:
        if largest < 0x80:  # one byte per value: the values are the payload
            return fixed_entries(name, INT64, matrix.astype(np.uint8))
        lengths = np.full(rows, matrix.shape[1])
        width = matrix.shape[1]
    zeros = bytes(width)
    pads = (width - lengths).tolist()
    values = matrix[np.arange(matrix.shape[1])[None, :] < lengths[:, None]].astype(np.uint64)
    widest = max(1, (largest.bit_length() + 6) // 7)
    sizes = np.ones(values.shape, np.int64)
    for k in range(1, widest):
        sizes += values >= np.uint64(1 << (7 * k))
    ends = np.cumsum(sizes)
    first_byte = ends - sizes
    data = np.empty(int(ends[-1]), np.uint8)
    for k in range(widest):
        has = sizes > k if k else slice(None)
        group = (values[has] >> np.uint64(7 * k)) & np.uint64(0x7F)
        more = (sizes[has] > k + 1).astype(np.uint64) << np.uint64(7)
        data[first_byte[has] + k] = (group | more).astype(np.uint8)
    data = data.tobytes()
    row_ends = ends[np.cumsum(lengths) - 1].tolist()
    return [
        entry_prefix(name, INT64, end - start + pad) + data[start:end] + zeros[:pad]
        for start, end, pad in zip([0] + row_ends[:-1], row_ends, pads)
    ]


def example(entries):
    """A serialized tf.train.Example from its joined map entries."""
    return b"\x0a" + varint(len(entries)) + entries


def frame_with_slots(records):
    """Records framed as TFRecords with zero CRC slots, joined: (bytes, int64 end offset of each)."""
    slot = bytes(4)
    framed = [len(record).to_bytes(8, "little") + slot + record + slot for record in records]
    return b"".join(framed), np.cumsum([len(record) for record in framed], dtype=np.int64)


def _masked(crcs):
    crcs = np.asarray(crcs, np.uint32)
    return ((crcs >> np.uint32(15)) | (crcs << np.uint32(17))) + np.uint32(_CRC_MASK_DELTA)


@functools.cache
def native_crc32c_address():
    """The address of `crc32c_value(const uint8_t *, size_t)` in the C library google-crc32c runs on (the wheels
    ship it beside the package), for the compiled builder to call; 0 when there is none to be found (google-crc32c's
    pure-Python build, another layout), and `fill_checksums` then runs in Python: the same bytes, about 30% slower
    instance building. A candidate is used only if it agrees with `google_crc32c.value`."""
    if google_crc32c.implementation != "c":
        return 0
    probe = b"keras-albert TFRecord"
    for path in _crc32c_libraries():
        try:
            function = ctypes.CDLL(path).crc32c_value
        except (OSError, AttributeError):
            continue
        function.restype = ctypes.c_uint32
        function.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        if function(probe, len(probe)) == crc32c(probe):
            return ctypes.cast(function, ctypes.c_void_p).value
    return 0


def _crc32c_libraries():
    """Where google-crc32c's C library may be: beside the package as its wheels ship it (Linux, macOS), else where
    the system keeps libraries (a source build links the system's libcrc32c; `find_library` runs a subprocess, so it
    is asked last)."""
    package = os.path.dirname(google_crc32c.__file__)
    yield from sorted(glob.glob(os.path.join(package, os.pardir, "google_crc32c.libs", "libcrc32c*")))
    yield from sorted(glob.glob(os.path.join(package, ".dylibs", "libcrc32c*")))
    found = ctypes.util.find_library("crc32c")
    if found:
        yield found


def fill_checksums(blob, ends):
    """`blob` (framed records ending at `ends`, CRC slots zero) with both CRC-32Cs of every record filled in."""
    if not len(ends):
        return blob
    ends = np.asarray(ends, np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    # A record's length takes few values: the CRC of each distinct length once.
    lengths, inverse = np.unique(ends - starts - HEADER_BYTES - FOOTER_BYTES, return_inverse=True)
    header_crcs = _masked([crc32c(length.to_bytes(8, "little")) for length in lengths.tolist()])[inverse]
    # google-crc32c takes bytes only (not a memoryview), so each record is sliced out of the bytes.
    record_crcs = _masked(
        [crc32c(blob[start:end]) for start, end in zip((starts + HEADER_BYTES).tolist(), (ends - FOOTER_BYTES).tolist())]
    )
    out = bytearray(blob)
    view = np.frombuffer(out, np.uint8)
    slots = np.concatenate([starts + 8, ends - FOOTER_BYTES])[:, None] + np.arange(4)
    view[slots] = np.concatenate([header_crcs, record_crcs]).astype("<u4").view(np.uint8).reshape(-1, 4)
    return out
