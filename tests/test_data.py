"""Data sources on files the tests write: CIFAR batches folder, .npz, an image folder, digits."""
from __future__ import annotations

import hashlib
import pickle
import tarfile

import numpy as np
import pytest

from nas.config import DataConfig
from nas.data import DataError, data_info, load_splits, split_indices
from nas.data.cifar import cifar10_source, download, read_batch

TEST_VALUE = 7  # every pixel of the fake test split has this value; no training pixel does


def _train_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n fake 32x32 RGB images whose pixels avoid TEST_VALUE, labels 0..9 balanced; label k images have mean ~ 20k."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    x = rng.integers(10, 250, size=(n, 32, 32, 3), dtype=np.uint8)
    x[:, 0, 0, 0] = y * 20 + 10  # a per-class marker, to check labels travel with their images
    return x, y.astype(np.uint8)


def _write_batches(folder, x, y, x_test, y_test) -> None:
    folder.mkdir(parents=True)
    parts = np.array_split(np.arange(len(x)), 5)
    for i, idx in enumerate(parts, 1):
        d = {b"batch_label": f"training batch {i} of 5".encode(), b"labels": [int(v) for v in y[idx]],
             b"data": x[idx].transpose(0, 3, 1, 2).reshape(len(idx), -1), b"filenames": [b"f.png"] * len(idx)}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(d, protocol=2))
    d = {b"batch_label": b"testing batch 1 of 1", b"labels": [int(v) for v in y_test],
         b"data": x_test.transpose(0, 3, 1, 2).reshape(len(x_test), -1)}
    (folder / "test_batch").write_bytes(pickle.dumps(d, protocol=2))


@pytest.fixture
def fake_cifar(tmp_path):
    x, y = _train_images(200)
    x_test = np.full((30, 32, 32, 3), TEST_VALUE, np.uint8)
    y_test = (np.arange(30) % 10).astype(np.uint8)
    return tmp_path, x, y, x_test, y_test


def _assert_train_only(s, n_total: int, val_fraction: float) -> None:
    xs = np.concatenate([s.x_train.numpy(), s.x_val.numpy()])
    assert len(xs) == n_total
    assert not (xs == TEST_VALUE).all(axis=(1, 2, 3)).any(), "a test image leaked into train/val"
    assert len(s.y_val) == pytest.approx(val_fraction * n_total, abs=1)
    # Stratified: every class equally represented in the held-out split.
    counts = np.bincount(s.y_val.numpy(), minlength=10)
    assert counts.max() - counts.min() <= 1


def test_cifar_batches_folder(fake_cifar):
    tmp, x, y, x_test, y_test = fake_cifar
    _write_batches(tmp / "cifar-10-batches-py", x, y, x_test, y_test)
    xb, yb = read_batch(tmp / "cifar-10-batches-py" / "data_batch_1")
    np.testing.assert_array_equal(xb, x[:40])  # CHW rows back to NHWC exactly
    np.testing.assert_array_equal(yb, y[:40])
    cfg = DataConfig(source="cifar10", path=str(tmp), val_fraction=0.25, split_seed=3, normalize=True)
    s = load_splits(cfg, 32)
    assert tuple(s.x_train.shape[1:]) == (3, 32, 32) and s.num_classes == 10
    _assert_train_only(s, 200, 0.25)
    # Labels stay with their images (the per-class marker pixel).
    np.testing.assert_array_equal(s.x_train[:, 0, 0, 0].numpy(), s.y_train.numpy() * 20 + 10)
    assert len(s.mean) == 3 and all(0 < m < 1 for m in s.mean)
    assert data_info(cfg) == (3, 10)
    # The same folder given directly works too, and the split is fixed by split_seed.
    s2 = load_splits(DataConfig(source="cifar10", path=str(tmp / "cifar-10-batches-py"), val_fraction=0.25,
                                split_seed=3), 32)
    assert (s2.y_val == s.y_val).all() and (s2.x_val == s.x_val).all()


def test_cifar_pickle_refuses_foreign_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(pickle.UnpicklingError, match="not part of a CIFAR batch"):
        read_batch(tmp_path / "data_batch_1")


def test_cifar_npz_and_subset(fake_cifar):
    tmp, x, y, x_test, y_test = fake_cifar
    np.savez(tmp / "c.npz", x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    cfg = DataConfig(source="cifar10", path=str(tmp / "c.npz"), subset=100, val_fraction=0.2, resolution=16)
    s = load_splits(cfg, None)
    assert tuple(s.x_train.shape) == (80, 3, 16, 16) and s.resolution == 16
    _assert_train_only(s, 100, 0.2)
    assert np.bincount(s.y_train.numpy(), minlength=10).tolist() == [8] * 10  # subset stratified too


def test_cifar_download_verifies_checksum(fake_cifar, tmp_path):
    tmp, x, y, x_test, y_test = fake_cifar
    src = tmp / "src"
    _write_batches(src / "cifar-10-batches-py", x, y, x_test, y_test)
    archive = tmp / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    url = archive.as_uri()  # file:// stands in for the standard URL (no network here)
    with pytest.raises(DataError, match="does not match"):
        download(url, tmp / "bad", "md5:" + "0" * 32)
    assert not (tmp / "bad" / "cifar-10-batches-py").exists()  # nothing unpacked from a bad archive
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    folder = download(url, tmp / "good", f"sha256:{sha}")
    assert (folder / "data_batch_5").is_file()
    s = cifar10_source(tmp / "dl", download_ok=True, url=url, checksum=f"md5:{md5}")
    assert s.x.shape == (200, 32, 32, 3)


def test_cifar_missing_says_where_to_put_files(tmp_path):
    with pytest.raises(DataError, match="put the 'cifar-10-batches-py' folder"):
        cifar10_source(tmp_path / "nothing", download_ok=False)
    with pytest.raises(DataError, match="download from"):
        cifar10_source(tmp_path / "nothing", download_ok=True, url=(tmp_path / "absent.tar.gz").as_uri())


def test_imagefolder_pngs(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for c, name in enumerate(["cat", "dog", "emu"]):
        (root / "train" / name).mkdir(parents=True)
        for i in range(6):
            arr = np.full((20 + i, 30, 3), 40 * c + 30, np.uint8) + rng.integers(0, 5, (20 + i, 30, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / "train" / name / f"{i}.png")
    (root / "val" / "cat").mkdir(parents=True)  # the ImageNet layout's test split: never read
    Image.fromarray(np.full((20, 20, 3), TEST_VALUE, np.uint8)).save(root / "val" / "cat" / "x.png")
    cfg = DataConfig(source="imagefolder", path=str(root), val_fraction=1 / 3, resolution=12)
    s = load_splits(cfg, None)
    assert tuple(s.x_train.shape) == (12, 3, 12, 12) and len(s.y_val) == 6 and s.num_classes == 3
    assert np.bincount(s.y_val.numpy()).tolist() == [2, 2, 2]
    # Class c's images are about 40c + 32: labels follow the sorted folder names.
    means = s.x_train.float().mean(dim=(1, 2, 3)).numpy()
    np.testing.assert_allclose(means, 40 * s.y_train.numpy() + 32, atol=2)
    with pytest.raises(DataError, match="at least two class"):
        load_splits(DataConfig(source="imagefolder", path=str(root / "val")), 8)


def test_digits_upsampled_and_split():
    s = load_splits(DataConfig(source="digits", resolution=16, interpolation="nearest"), None)
    assert tuple(s.x_train.shape[1:]) == (1, 16, 16) and s.num_classes == 10
    assert len(s.y_train) + len(s.y_val) == 1797
    assert len(s.y_val) == 360  # 20% held out
    # Nearest upsampling by 2 repeats each pixel in 2x2 blocks.
    x = s.x_train[0, 0]
    assert (x[::2, ::2] == x[1::2, 1::2]).all()
    s8 = load_splits(DataConfig(source="digits"), 8)
    assert tuple(s8.x_train.shape[1:]) == (1, 8, 8) and int(s8.x_train.max()) == 255


def test_split_is_stratified_and_seeded():
    y = np.repeat(np.arange(4), [40, 20, 20, 20])
    tr, va = split_indices(y, 0.25, split_seed=1)
    assert len(va) == 25 and np.bincount(y[va]).tolist() == [10, 5, 5, 5]
    assert set(tr).isdisjoint(va) and len(tr) + len(va) == 100
    tr2, va2 = split_indices(y, 0.25, split_seed=1)
    assert (va == va2).all()
    assert not np.array_equal(split_indices(y, 0.25, split_seed=2)[1], va)
    with pytest.raises(DataError, match="stratified"):
        split_indices(np.array([0, 0, 0, 1]), 0.5, 0)

