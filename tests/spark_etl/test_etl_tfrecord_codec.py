"""The TensorFlow-free TFRecord writer against TensorFlow's own protobuf and reader."""

from __future__ import annotations

import numpy as np
import pytest

from kfp_edge.tfrecord import (
    ExampleEncoder,
    TFRecordWriter,
    encode_example,
    frame_record,
    read_records,
)


def _tf_example(tf, values, label):
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                "features": tf.train.Feature(float_list=tf.train.FloatList(value=values)),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }
        )
    )


@pytest.mark.parametrize(
    "values,label",
    [
        ([5.1, 3.5, 1.4, 0.2], 0),
        ([0.0] * 25, 3),
        ([-1e30, 1e-30, 123.456], 300),  # two-byte varint label
        ([1.0], -1),  # negative int64: ten-byte varint
        ([], 7),
    ],
)
def test_encoded_example_is_byte_identical_to_tensorflow(values, label):
    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()
    expected = _tf_example(tf, values, label).SerializeToString(deterministic=True)
    assert encode_example(values, label) == expected
    if values:
        batch = ExampleEncoder(len(values)).encode(np.array([values]), np.array([label]))
        assert list(batch) == [expected]


def test_tensorflow_reads_shards_written_without_tensorflow(tmp_path):
    from kfp_edge.tf_env import import_tf

    tf, _ = import_tf()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = rng.integers(0, 4, 300)
    path = tmp_path / "part-00000.tfrecord"
    with TFRecordWriter(path) as writer:
        writer.write_many(ExampleEncoder(6).encode(x[:100], y[:100]))
        for record in ExampleEncoder(6).encode(x[100:], y[100:]):
            writer.write(record)
    assert writer.rows == 300
    spec = {
        "features": tf.io.FixedLenFeature([6], tf.float32),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }
    parsed = [tf.io.parse_single_example(r, spec) for r in tf.data.TFRecordDataset(str(path))]
    np.testing.assert_array_equal(np.stack([p["features"].numpy() for p in parsed]), x)
    np.testing.assert_array_equal(np.array([p["label"].numpy() for p in parsed]), y)
    # and TensorFlow's writer frames the same payload into the same bytes
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as w:
        for record in ExampleEncoder(6).encode(x, y):
            w.write(record)
    assert (tmp_path / "tf.tfrecord").read_bytes() == path.read_bytes()


def test_reader_detects_corruption_and_writer_never_overwrites(tmp_path):
    path = tmp_path / "a.tfrecord"
    with TFRecordWriter(path) as writer:
        writer.write(b"hello")
        writer.write(b"world")
    assert list(read_records(path)) == [b"hello", b"world"]
    data = bytearray(path.read_bytes())
    data[14] ^= 0xFF  # inside the first payload
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="record 0: data CRC mismatch"):
        list(read_records(path))
    (tmp_path / "b.tfrecord").write_bytes(frame_record(b"x")[:-2])
    with pytest.raises(ValueError, match="truncated"):
        list(read_records(tmp_path / "b.tfrecord"))
    with pytest.raises(FileExistsError, match="other content"):
        with TFRecordWriter(path) as w:
            w.write(b"other")
    assert path.read_bytes() == bytes(data)
    (tmp_path / "b.tfrecord").unlink()
    for _ in range(2):  # a retried task writing the same bytes completes
        with TFRecordWriter(tmp_path / "b.tfrecord") as again:
            again.write(b"x")
    assert list(read_records(tmp_path / "b.tfrecord")) == [b"x"]
    with pytest.raises(RuntimeError):
        with TFRecordWriter(tmp_path / "c.tfrecord") as w:
            w.write(b"half")
            raise RuntimeError("task failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tfrecord", "b.tfrecord"]


@pytest.mark.parametrize("labels", [[0, 1, 2], [0, 300, -1]])  # one varint width, and mixed
def test_framed_batch_is_the_records_framed_one_by_one(labels):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 6)) * 1e3
    y = rng.choice(labels, 500)
    encoder = ExampleEncoder(6)
    expected = b"".join(frame_record(r) for r in encoder.encode(x, y))
    assert encoder.framed(x, y) == expected
    assert ExampleEncoder(0).framed(np.zeros((3, 0)), y[:3]) == b"".join(
        frame_record(encode_example([], int(v))) for v in y[:3]
    )
