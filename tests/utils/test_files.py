import os

import pytest

from frcnn.utils.files import atomic_write, is_inside


def test_is_inside_plain_paths(tmp_path):
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    assert is_inside(root, root)
    assert is_inside(root, root / "a" / "b" / "c.jpg")  # need not exist
    assert is_inside(str(root), str(root / "a"))
    assert is_inside(root, root / "a" / ".." / "a" / "b")
    assert not is_inside(root, tmp_path)
    assert not is_inside(root, tmp_path / "rootless")  # a sibling whose name starts like root's


def test_is_inside_dotdot_and_absolute_paths(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    assert not is_inside(root, root / ".." / "other.jpg")
    assert not is_inside(root, root / "a" / ".." / ".." / "x")
    assert not is_inside(root, "/etc/passwd")
    assert not is_inside(root, root / "/etc/passwd")  # joining an absolute path replaces root
    assert is_inside(root, root / str(root / "x.jpg"))


def test_is_inside_follows_symlinks(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"x")
    (root / "link").symlink_to(outside)
    (root / "file_link.jpg").symlink_to(outside / "secret.jpg")
    (root / "inner").mkdir()
    (root / "inner_link").symlink_to(root / "inner")
    assert not is_inside(root, root / "link" / "secret.jpg")
    assert not is_inside(root, root / "file_link.jpg")
    assert is_inside(root, root / "inner_link" / "x.jpg")
    # a root reached through a symlink still contains its own files
    (tmp_path / "root_link").symlink_to(root)
    assert is_inside(tmp_path / "root_link", root / "inner" / "x.jpg")
    assert is_inside(root, tmp_path / "root_link" / "inner")


def test_atomic_write_creates_and_replaces(tmp_path):
    path = tmp_path / "f.bin"
    with atomic_write(path) as f:
        f.write(b"first")
        assert not path.exists(), "the file appears only when the block ends"
    assert path.read_bytes() == b"first"
    with atomic_write(path, "wb") as f:
        f.write(b"second")
        assert path.read_bytes() == b"first"
    assert path.read_bytes() == b"second"
    with atomic_write(path, "w") as f:
        f.write("text \u00e9")
    assert path.read_text(encoding="utf-8") == "text \u00e9"
    assert os.listdir(tmp_path) == ["f.bin"], "no temporary file is left behind"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_atomic_write_failure_keeps_the_old_file(tmp_path, error):
    path = tmp_path / "f.json"
    path.write_text("old")
    with pytest.raises(error):
        with atomic_write(path, "w") as f:
            f.write("half of the new")
            raise error("boom")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.json"], "the temporary file is removed"


def test_atomic_write_failure_without_a_previous_file(tmp_path):
    path = tmp_path / "new.bin"
    with pytest.raises(ValueError):
        with atomic_write(path) as f:
            f.write(b"x")
            raise ValueError
    assert os.listdir(tmp_path) == []


def test_atomic_write_refuses_other_modes(tmp_path):
    for mode in ("a", "r", "w+", "ab"):
        with pytest.raises(ValueError):
            with atomic_write(tmp_path / "f", mode):
                pass
    assert os.listdir(tmp_path) == []
