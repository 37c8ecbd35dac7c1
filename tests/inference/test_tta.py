"""Test-time augmentation (inference/tta.py): mirrored and rescaled passes, merged by class-wise NMS."""

import numpy as np
import pytest
from conftest import shapes_samples
from easydict import EasyDict

from frcnn.data.datasets.base import ImageRecord
from frcnn.inference.records import detect_records
from frcnn.inference.tta import TTA, Augmented, at_test_scale, merge_passes, mirrored, parse_tta

CLASSES = ("__background__", "a", "b", "c")


@pytest.fixture(scope="module")
def image():
    return np.ascontiguousarray(shapes_samples(1, seed=5)[0][0])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("flip", TTA(True, ())),
        ("scales=96,128,160", TTA(False, (96, 128, 160))),
        ("flip,scales=96,160", TTA(True, (96, 160))),
        ("scales=96,flip", TTA(True, (96,))),
    ],
)
def test_the_tta_text_names_flip_and_scales(text, expected):
    assert parse_tta(text) == expected


@pytest.mark.parametrize("text", ["flop", "scales=", "scales=big", "scales=0", "flip,100"])
def test_a_bad_tta_says_what_is_wanted(text):
    with pytest.raises(ValueError, match="--tta"):
        parse_tta(text)


def test_a_mirrored_box_comes_back_to_its_pixels():
    # inclusive pixels 10..19 of a 100-pixel row are 80..89 mirrored
    found = {"boxes": np.array([[10, 5, 19, 15]], np.float32), "scores": np.ones(1), "labels": np.ones(1, int)}
    back = mirrored(found, 100)
    assert back["boxes"].tolist() == [[80, 5, 89, 15]] and found["boxes"].tolist() == [[10, 5, 19, 15]]
    assert mirrored(back, 100)["boxes"].tolist() == [[10, 5, 19, 15]]


def test_passes_merge_by_class_wise_nms_best_first():
    def det(boxes, scores, labels):
        return {
            "boxes": np.array(boxes, np.float32),
            "scores": np.array(scores, np.float32),
            "labels": np.array(labels),
        }

    one = det([[0, 0, 9, 9], [50, 50, 59, 59]], [0.9, 0.4], [1, 1])
    two = det([[1, 0, 10, 9], [0, 0, 9, 9]], [0.8, 0.7], [1, 2])  # IoU 9/11 with one's first; another class
    merged = merge_passes([one, two], nms=0.5, keep=10)
    assert merged["scores"].tolist() == pytest.approx([0.9, 0.7, 0.4])
    assert merged["labels"].tolist() == [1, 2, 1]
    assert len(merge_passes([one, two], nms=0.5, keep=2)["scores"]) == 2


def test_flip_alone_equals_merging_the_two_passes_by_hand(random_tiny_detector, image):
    detector = random_tiny_detector
    plain = detector.detect_arrays([image])[0]
    flipped = detector.detect_arrays([np.ascontiguousarray(image[:, ::-1])])[0]
    by_hand = merge_passes([plain, mirrored(flipped, image.shape[1])], detector.cfg.TEST.NMS, 100)
    found = detector(image, tta="flip")
    assert len(found) == len(by_hand["scores"]) > len(plain["scores"])
    np.testing.assert_array_equal(found.boxes, by_hand["boxes"])
    np.testing.assert_array_equal(found.scores, by_hand["scores"])


def test_scales_run_at_each_scale_and_leave_the_config_as_it_was(random_tiny_detector, image):
    detector = random_tiny_detector
    with at_test_scale(detector.cfg, 96):  # the pass at 96 px is the detector at TEST.SCALES [96]
        assert (detector.cfg.TEST.SCALES, detector.cfg.TEST.MAX_SIZE) == ([96], 384)  # MAX_SIZE 512 x 96 / 128
        expected_96 = detector.detect_arrays([image])[0]
    assert (detector.cfg.TEST.SCALES, detector.cfg.TEST.MAX_SIZE) == ([128], 512)
    at_128 = detector.detect_arrays([image])[0]
    assert not np.array_equal(expected_96["boxes"], at_128["boxes"])  # the scale reached the model
    merged = Augmented(detector, TTA(False, (96, 128))).detect_arrays([image])[0]
    by_hand = merge_passes([expected_96, detector.detect_arrays([image])[0]], detector.cfg.TEST.NMS, 100)
    np.testing.assert_array_equal(merged["boxes"], by_hand["boxes"])


def test_the_evaluator_path_takes_tta_too(random_tiny_detector, image, tmp_path):
    import cv2

    detector = random_tiny_detector
    cv2.imwrite(str(tmp_path / "a.png"), image[:, :, ::-1])
    h, w = image.shape[:2]
    record = ImageRecord(
        0, str(tmp_path / "a.png"), w, h, np.zeros((0, 4)), np.zeros(0, int), np.zeros(0, bool), np.zeros(0, bool)
    )
    (found,) = detect_records(detector, [record], progress=False, tta="flip")
    np.testing.assert_array_equal(found["boxes"], detector(image, tta="flip").boxes)


def test_rescaling_a_model_that_resizes_itself_is_refused():
    fake = EasyDict(classes=("bg", "a"), cfg=EasyDict(CONVENTION="torchvision"))
    with pytest.raises(ValueError, match="use flip"):
        Augmented(fake, TTA(True, (480,)))
    assert Augmented(fake, TTA(True, ())).tta.flip


def test_scales_far_from_the_models_own_are_warned_about_once(caplog):
    cfg = EasyDict(CONVENTION="original", TRAIN=EasyDict(SCALES=[256]), TEST=EasyDict(SCALES=[256]))
    fake = EasyDict(classes=("bg", "a"), cfg=cfg)
    with caplog.at_level("WARNING", logger="frcnn.tta"):
        Augmented(fake, TTA(True, (192, 256, 384)))  # within 1.5x of 256: 171 to 384 px
        assert not caplog.records
        Augmented(fake, TTA(False, (160, 480, 600)))
        Augmented(fake, TTA(False, (160, 480, 600)))
    (warning,) = caplog.records
    assert "--tta scales 160,480,600 are far from the model's own (256 px)" in warning.getMessage()
