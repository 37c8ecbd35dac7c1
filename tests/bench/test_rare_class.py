"""tools/rare_class.py: the shapes data with one class made rare, for the per-class thresholds."""

from frcnn.data.datasets.factory import dataset_spec
from frcnn.data.datasets.shapes import SHAPES_CLASSES, ShapesDataset
from tools import rare_class


def holding(records, label: int) -> int:
    return sum(label in r.labels for r in records)


def test_every_split_loses_the_rare_class_s_images_and_the_rest_stay(small_shapes_root, tmp_path):
    out = tmp_path / "rare.yaml"
    splits = rare_class.write_rare_split(small_shapes_root, out, "circle", keep=0.0, val=6)
    spec = dataset_spec(str(out))
    train, val, test = spec.train()[0].records, spec.val().records, spec.test().records
    assert [len(train), len(val), len(test)] == [len(splits[s]) for s in ("train", "val", "test")]
    assert holding(train, 1) == holding(val, 1) == holding(test, 1) == 0  # keep 0: no circle anywhere
    assert not {r.id for r in train} & {r.id for r in val}  # val is held out of training
    original = ShapesDataset("trainval", small_shapes_root).records + ShapesDataset("test", small_shapes_root).records
    assert len(train) + len(val) + len(test) == sum(1 not in r.labels for r in original)
    assert spec.train()[0].classes[1:] == SHAPES_CLASSES
    assert spec.profile["TRAIN"]["SCALES"] == spec.profile["TEST"]["SCALES"] == [256]  # the built-in data's scale


def test_keeping_everything_only_splits_off_val(small_shapes_root, tmp_path):
    splits = rare_class.write_rare_split(small_shapes_root, tmp_path / "all.yaml", "star", keep=1.0, val=6)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [18, 6, 8]
