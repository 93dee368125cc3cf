"""TFRecord files of ``tf.train.Example`` written without TensorFlow.

The Spark image has no TensorFlow, so the ETL encodes the protobuf bytes itself. The layout is
the one of the data contract (:mod:`kfp_edge.dataset`): an ``Example`` with two features,
``features`` (a float list of raw values) and ``label`` (an int64 list of one class id).

Wire format (``tensorflow/core/example/example.proto`` and ``feature.proto``)::

    Example  { Features features = 1; }
    Features { map<string, Feature> feature = 1; }    // entry: key = 1, value = 2
    Feature  { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

Map entries are written in key order, as TensorFlow's deterministic serialization does, so a
record here is byte-identical to ``example.SerializeToString(deterministic=True)``.

TFRecord framing (``tensorflow/core/lib/io/record_writer.cc``)::

    uint64 length (little endian) | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
"""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from kfp_edge.dataset import FEATURES_KEY, LABEL_KEY

_MASK_DELTA = 0xA282EAD8


def _varint(value: int) -> bytes:
    """Protobuf base-128 varint; negative int64 values take ten bytes (two's complement)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def masked_crc32c(data: bytes) -> int:
    """The masked CRC32C of TFRecord framing.

    Args:
        data: The bytes to checksum.

    Returns:
        ``((crc >> 15) | (crc << 17)) + 0xa282ead8`` modulo 2**32.
    """
    import google_crc32c

    crc = google_crc32c.value(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """Frames one serialized record the way TensorFlow's ``TFRecordWriter`` does.

    Args:
        data: The record payload (a serialized ``tf.train.Example``).

    Returns:
        Length, its masked CRC, the payload and its masked CRC.
    """
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def _entry(key: str, feature: bytes) -> bytes:
    """One ``Features.feature`` map entry as a field of ``Features``."""
    return _field(1, _field(1, key.encode()) + _field(2, feature))


def encode_example(features: Iterable[float], label: int) -> bytes:
    """Serializes one ``tf.train.Example`` of the data contract.

    Args:
        features: Raw feature values (stored as float32).
        label: The class id (int64).

    Returns:
        The protobuf bytes, identical to TensorFlow's deterministic serialization.
    """
    floats = np.asarray(list(features), dtype="<f4").tobytes()
    float_feature = _field(2, _field(1, floats) if floats else b"")
    int_feature = _field(3, _field(1, _varint(int(label))))
    return _field(1, _entry(FEATURES_KEY, float_feature) + _entry(LABEL_KEY, int_feature))


class ExampleEncoder:
    """Fast encoder of many Examples with the same number of features.

    Everything except the float bytes and the label depends only on the number of features, so
    the constant parts are built once and each record is a concatenation and two CRCs.

    Args:
        num_features: Length of the ``features`` float list.
    """

    def __init__(self, num_features: int):
        self.num_features = num_features
        width = 4 * num_features
        # FloatList{value=1: packed floats} (an empty list has no field at all)
        list_head = _varint((1 << 3) | 2) + _varint(width) if num_features else b""
        list_len = len(list_head) + width
        # Feature{float_list=2: FloatList}
        feature_head = _varint((2 << 3) | 2) + _varint(list_len) + list_head
        feature_len = len(feature_head) - len(list_head) + list_len
        # map entry {key=1: "features", value=2: Feature}
        key = _field(1, FEATURES_KEY.encode())
        entry_head = key + _varint((2 << 3) | 2) + _varint(feature_len) + feature_head
        entry_len = len(entry_head) - len(feature_head) + feature_len
        # Features{feature=1: entry}: everything of the features entry before the float bytes
        self._features_head = _varint((1 << 3) | 2) + _varint(entry_len) + entry_head
        self._features_len = len(self._features_head) + width
        self._labels: dict[int, tuple[bytes, bytes]] = {}

    def _label_parts(self, label: int) -> tuple[bytes, bytes]:
        parts = self._labels.get(label)
        if parts is None:
            label_entry = _entry(LABEL_KEY, _field(3, _field(1, _varint(label))))
            body_len = self._features_len + len(label_entry)
            head = _varint((1 << 3) | 2) + _varint(body_len) + self._features_head
            parts = (head, label_entry)
            self._labels[label] = parts
        return parts

    def encode(self, x: np.ndarray, y: np.ndarray) -> Iterator[bytes]:
        """Yields the serialized Examples of a batch.

        Args:
            x: Raw features, shape ``[rows, num_features]``.
            y: Class ids, shape ``[rows]``.

        Yields:
            One serialized ``tf.train.Example`` per row.
        """
        x = np.ascontiguousarray(x, dtype="<f4")
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(
                f"expected features of shape [rows, {self.num_features}], got {list(x.shape)}"
            )
        width = 4 * self.num_features
        raw = x.tobytes()
        for i, label in enumerate(np.asarray(y, dtype=np.int64).tolist()):
            head, tail = self._label_parts(label)
            yield head + raw[i * width : (i + 1) * width] + tail

    def framed(self, x: np.ndarray, y: np.ndarray) -> bytes:
        """The framed TFRecord bytes of a batch, built with numpy (a row of bytes a record).

        The same bytes as :meth:`TFRecordWriter.write_many` writes of :meth:`encode`'s records.

        Args:
            x: Raw features, shape ``[rows, num_features]``.
            y: Class ids, shape ``[rows]``.

        Returns:
            The records, each with its length, masked CRCs and payload.
        """
        import google_crc32c

        y = np.asarray(y, dtype=np.int64)
        labels, which = np.unique(y, return_inverse=True)
        parts = [self._label_parts(int(label)) for label in labels]
        if len({len(h) + len(t) for h, t in parts}) > 1:  # labels of unequal varint widths
            records = self.encode(x, y)
            return b"".join(frame_record(r) for r in records)
        x = np.ascontiguousarray(x, dtype="<f4")
        rows, width = len(y), 4 * self.num_features
        heads = np.frombuffer(b"".join(h for h, _ in parts), np.uint8).reshape(len(parts), -1)
        tails = np.frombuffer(b"".join(t for _, t in parts), np.uint8).reshape(len(parts), -1)
        size = heads.shape[1] + width + tails.shape[1]
        length = struct.pack("<Q", size)
        framed = np.empty((rows, 12 + size + 4), np.uint8)
        framed[:, :12] = np.frombuffer(length + struct.pack("<I", masked_crc32c(length)), np.uint8)
        at = 12 + heads.shape[1]
        framed[:, 12:at] = heads[which]
        framed[:, at : at + width] = x.view(np.uint8).reshape(rows, width)
        framed[:, at + width : 12 + size] = tails[which]
        payloads, crc = framed[:, 12 : 12 + size].tobytes(), google_crc32c.value
        crcs = np.fromiter(
            (crc(payloads[o : o + size]) for o in range(0, rows * size, size)), np.uint32, rows
        )
        masked = ((crcs >> 15) | (crcs << 17)) + np.uint32(_MASK_DELTA)
        framed[:, 12 + size :] = masked.astype("<u4").view(np.uint8).reshape(rows, 4)
        return framed.tobytes()


class TFRecordWriter:
    """Writes framed records to a file and keeps their count and the file's sha256.

    Records go to a hidden partial file that :meth:`close` moves into place, so a reader never
    sees a half-written shard. An existing file is never overwritten: closing onto a file with
    different bytes raises; onto identical bytes (a retried Spark task) it is a no-op.

    Args:
        path: The file to create.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.partial")
        self._file = open(self._partial, "xb")  # noqa: SIM115 - closed in close()
        self._sha = hashlib.sha256()
        self._heads: dict[int, bytes] = {}  # framed length prefixes by payload length
        self.rows = 0

    def write(self, data: bytes) -> None:
        """Appends one record.

        Args:
            data: The record payload.
        """
        framed = frame_record(data)
        self._file.write(framed)
        self._sha.update(framed)
        self.rows += 1

    def write_many(self, records: Iterable[bytes]) -> None:
        """Appends many records with one file write (faster than :meth:`write` in a loop).

        Args:
            records: The record payloads.
        """
        import google_crc32c

        pack_q, pack_i, crc = (
            struct.Struct("<Q").pack,
            struct.Struct("<I").pack,
            google_crc32c.value,
        )
        heads = self._heads
        parts = []
        count = 0
        for data in records:
            n = len(data)
            head = heads.get(n)
            if head is None:
                length = pack_q(n)
                head = heads[n] = length + pack_i(masked_crc32c(length))
            c = crc(data)
            masked = ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF
            parts += (head, data, pack_i(masked))
            count += 1
        buffer = b"".join(parts)
        self._file.write(buffer)
        self._sha.update(buffer)
        self.rows += count

    def write_framed(self, data: bytes, records: int) -> None:
        """Appends records already framed (:meth:`ExampleEncoder.framed`).

        Args:
            data: The framed records.
            records: How many records ``data`` holds.
        """
        self._file.write(data)
        self._sha.update(data)
        self.rows += records

    def close(self) -> str:
        """Finishes the file and moves it into place.

        Returns:
            The sha256 hex digest of the file's bytes.

        Raises:
            FileExistsError: If another file with different bytes appeared at the path.
        """
        digest = self._sha.hexdigest()
        if self._file.closed:
            return digest
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        try:
            os.link(self._partial, self.path)  # fails if the path exists: no overwrite
        except FileExistsError:
            existing = hashlib.sha256(self.path.read_bytes()).hexdigest()
            if existing != digest:
                raise FileExistsError(
                    f"{self.path} exists with other content; not overwritten"
                ) from None
        finally:
            self._partial.unlink(missing_ok=True)
        return digest

    def abort(self) -> None:
        """Drops the partial file without publishing it."""
        if not self._file.closed:
            self._file.close()
        self._partial.unlink(missing_ok=True)

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_records(path: str | os.PathLike) -> Iterator[bytes]:
    """Reads the payloads of a TFRecord file, checking both CRCs of every record.

    Args:
        path: A TFRecord file (uncompressed).

    Yields:
        The payload of each record.

    Raises:
        ValueError: On a truncated record or a CRC mismatch, naming the file and the record.
    """
    with open(path, "rb") as f:
        index = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise ValueError(f"{path}: record {index}: truncated header")
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc32c(header[:8]) != length_crc:
                raise ValueError(f"{path}: record {index}: length CRC mismatch")
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise ValueError(f"{path}: record {index}: truncated data")
            if masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                raise ValueError(f"{path}: record {index}: data CRC mismatch")
            yield data
            index += 1
