"""The three scripts as a user runs them: flags, and train -> test -> demo on a small dataset."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, SMALL_NET

from frcnn.inference.torch_detector import load_detector

SMALL = ["--set", *SMALL_NET]


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], capture_output=True, text=True, cwd=ROOT, timeout=600
    )


def load_script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name.removesuffix(".py"), ROOT / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], False),
        (["--r"], True),
        (["--r", "true"], True),
        (["--r", "false"], False),
        (["--r", "False"], False),
        (["--r", "0"], False),
    ],
)
def test_resume_flag_is_a_true_boolean(argv, expected):
    assert load_script("trainval_net.py").parse_args(argv).resume is expected


def test_original_flags_are_accepted():
    args = load_script("trainval_net.py").parse_args(
        [
            "--dataset",
            "pascal_voc",
            "--net",
            "res101",
            "--bs",
            "4",
            "--nw",
            "2",
            "--lr",
            "0.004",
            "--lr_decay_step",
            "8",
            "--lr_decay_gamma",
            "0.1",
            "--epochs",
            "10",
            "--start_epoch",
            "1",
            "--o",
            "adam",
            "--cag",
            "--s",
            "2",
            "--r",
            "true",
            "--checksession",
            "1",
            "--checkepoch",
            "3",
            "--checkpoint",
            "100",
            "--save_dir",
            "m",
            "--disp_interval",
            "20",
            "--cfg",
            "x.yml",
            "--set",
            "POOLING_MODE",
            "pool",
            "--cuda",
            "--mGPUs",
            "--ls",
        ]
    )
    assert (args.batch_size, args.optimizer, args.session, args.cag, args.cuda, args.set_cfgs) == (
        4,
        "adam",
        2,
        True,
        True,
        ["POOLING_MODE", "pool"],
    )
    demo = load_script("demo.py")
    assert demo.parse_args(["--webcam_num", "0"]).webcam == "0" == demo.parse_args(["--webcam", "0"]).webcam
    assert demo.parse_args([]).image_dir == "images"


@pytest.fixture(scope="module")
def trained(small_shapes_root, tmp_path_factory):
    """One short training run shared by the tests below: (data_dir, models dir, checkpoint)."""
    models = tmp_path_factory.mktemp("models")
    data_dir = str(small_shapes_root.parent)
    train = run(
        "trainval_net.py",
        "--dataset",
        "shapes",
        "--net",
        "tiny",
        "--bs",
        "4",
        "--epochs",
        "1",
        "--data_dir",
        data_dir,
        "--save_dir",
        str(models),
        "--disp_interval",
        "4",
        *SMALL,
    )
    assert train.returncode == 0, train.stderr
    assert "padding" in train.stdout and "img/s" in train.stdout and "random initialisation" in train.stdout
    # not a terminal: plain log lines every --disp_interval steps instead of a redrawn bar
    assert "epoch 1 step 4/12: rpn_cls=" in train.stdout and "\r" not in train.stderr
    checkpoint = models / "tiny" / "shapes" / "faster_rcnn_1_1_12.pth"
    assert checkpoint.is_file()
    return data_dir, models, checkpoint


def test_test_net_prints_aps_and_saves_results(trained, tmp_path):
    data_dir, models, _ = trained
    test = run(
        "test_net.py",
        "--dataset",
        "shapes",
        "--net",
        "tiny",
        "--data_dir",
        data_dir,
        "--load_dir",
        str(models),
        "--output_dir",
        str(tmp_path),
        "--vis",
    )
    assert test.returncode == 0, test.stderr
    lines = test.stdout.strip().splitlines()
    assert lines[-1].startswith("Mean AP = 0.") and len(lines[-1]) == len("Mean AP = 0.0000")
    assert [line.split(" = ")[0] for line in lines[-8:-1]] == [
        f"AP for {c}" for c in ("circle", "square", "triangle", "star", "cross", "ring", "crescent")
    ]
    results = tmp_path / "tiny" / "shapes" / "faster_rcnn_1_1_12"
    for name in ("detections.json", "ap.txt", "ap.json", "pr_curves.png", "report.html"):
        assert (results / name).is_file(), name
    assert len(list((results / "vis").glob("*_det.jpg"))) == 8
    page = (results / "report.html").read_text()
    table = re.search(r"<table id='ap'>(.*?)</table>", page).group(1)
    shown = dict(re.findall(r"<tr><td>([^<]+)</td><td class='ap'>([0-9.]*)</td>", table))
    stored = json.loads((results / "ap.json").read_text())["classes"]
    assert shown == {name: "" if v["ap"] is None else f"{v['ap']:.4f}" for name, v in stored.items()}


def test_saved_detections_evaluate_alike_and_metric_choice(trained, tmp_path):
    data_dir, models, _ = trained
    common = ["--dataset", "shapes", "--net", "tiny", "--data_dir", data_dir]
    first = run("test_net.py", *common, "--load_dir", str(models), "--output_dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    saved = tmp_path / "tiny" / "shapes" / "faster_rcnn_1_1_12" / "detections.json"
    again = run("test_net.py", *common, "--detections", str(saved), "--output_dir", str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().splitlines()[-8:] == first.stdout.strip().splitlines()[-8:]
    assert (
        tmp_path / "detections" / "shapes" / "faster_rcnn_1_1_12_detections" / "ap.json"
    ).is_file()  # per dataset and run
    loose = run("test_net.py", *common, "--detections", str(saved), "--iou", "0.3", "--output_dir", str(tmp_path))
    assert loose.returncode == 0, loose.stderr
    assert "metric voc at IoU 0.3" in loose.stdout + loose.stderr
    # a lower least IoU claims a superset of the objects at every rank: the AP cannot fall
    assert float(loose.stdout.split("Mean AP = ")[1]) >= float(first.stdout.split("Mean AP = ")[1])
    coco = run("test_net.py", *common, "--detections", str(saved), "--metric", "coco", "--output_dir", str(tmp_path))
    assert coco.returncode == 0, coco.stderr
    lines = coco.stdout.strip().splitlines()
    assert any("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all" in line for line in lines)
    headline = float(next(line for line in lines if "IoU=0.50:0.95 | area=   all | maxDets=100" in line).split("=")[-1])
    assert (
        lines[-1].startswith("Mean AP = ") and abs(float(lines[-1].split("=")[1]) - headline) <= 0.0005
    )  # summary has 3 decimals


def test_an_exported_detector_evaluates_as_its_checkpoint(trained, tmp_path):
    """export.py, then test_net.py on the ONNX file (ONNX Runtime): the same APs as the checkpoint's."""
    data_dir, _, checkpoint = trained
    exported = run("export.py", "--load_name", str(checkpoint), "--out", str(tmp_path / "tiny.onnx"))
    assert exported.returncode == 0, exported.stderr
    assert f"wrote {tmp_path / 'tiny.onnx'} (tiny, 7 classes)" in exported.stdout
    common = ["--dataset", "shapes", "--data_dir", data_dir, "--output_dir", str(tmp_path)]
    aps = []
    for model in (checkpoint, tmp_path / "tiny.onnx"):
        test = run("test_net.py", "--load_name", str(model), *common)
        assert test.returncode == 0, test.stderr
        aps.append(test.stdout.strip().splitlines()[-8:])
    assert aps[0] == aps[1] and aps[0][-1].startswith("Mean AP = 0.")


def test_checkpoint_on_other_classes_is_a_clear_error(trained, tmp_path, build):
    _, models, checkpoint = trained
    build.write_voc(tmp_path, "test", build.shapes_samples(2))
    (tmp_path / "other.yaml").write_text("format: voc\ntrain: test\ntest: test\nclasses: [cat, dog]\n")
    result = run("test_net.py", "--dataset", str(tmp_path / "other.yaml"), "--load_name", str(checkpoint))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "was trained on 7 classes" in result.stderr and "has 2" in result.stderr
    reordered = ["square", "circle", "triangle", "star", "cross", "ring", "crescent"]
    (tmp_path / "reordered.yaml").write_text(
        f"format: voc\ntrain: test\ntest: test\nclasses: [{', '.join(reordered)}]\n"
    )
    result = run("test_net.py", "--dataset", str(tmp_path / "reordered.yaml"), "--load_name", str(checkpoint))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "the same classes in another order" in result.stderr
    assert "classes: [circle, square, triangle, star, cross, ring, crescent]" in result.stderr


def test_demo_on_an_image_folder(trained, small_shapes_root, tmp_path):
    _, models, checkpoint = trained
    for src in sorted((small_shapes_root / "JPEGImages").glob("test_*.jpg"))[:2]:
        (tmp_path / src.name).write_bytes(src.read_bytes())
    demo = run("demo.py", "--load_name", str(checkpoint), "--image_dir", str(tmp_path), "--thresh", "0.0")
    assert demo.returncode == 0, demo.stderr
    assert len(list(tmp_path.glob("*_det.jpg"))) == 2
    assert "detections drawn" in demo.stdout


def test_demo_on_a_video_without_display_writes_a_video(trained, tmp_path):
    _, models, checkpoint = trained
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (160, 120))
    for i in range(6):
        frame = np.full((120, 160, 3), 40 * i, np.uint8)
        cv2.circle(frame, (80, 60), 30, (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    out = tmp_path / "out.mp4"
    demo = subprocess.run(
        [
            sys.executable,
            str(ROOT / "demo.py"),
            "--load_name",
            str(checkpoint),
            "--webcam",
            str(video),
            "--video_out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "DISPLAY": "", "WAYLAND_DISPLAY": ""},
    )
    assert demo.returncode == 0, demo.stderr
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    capture.release()


def test_user_errors_are_one_line_not_tracebacks(tmp_path):
    missing = run(
        "test_net.py", "--dataset", "shapes", "--net", "tiny", "--load_dir", str(tmp_path), "--data_dir", str(tmp_path)
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: ") and "Traceback" not in missing.stderr
    bad_set = run("trainval_net.py", "--set", "TRAIN.NOPE", "1", "--data_dir", str(tmp_path))
    assert bad_set.returncode == 2 and "unknown config key TRAIN.NOPE" in bad_set.stderr


def test_the_originals_test_and_demo_flags_are_applied_or_refused(trained, tmp_path):
    """--ls takes the large-scale test sizes, --cag on a class-specific checkpoint is refused with
    the reason, and demo.py takes --vis, --mGPUs, --parallel_type and --webcam_num -1 (the images)."""
    from frcnn.cli import checkpoint_settings

    data_dir, models, checkpoint = trained
    args = load_script("test_net.py").parse_args(["--ls", "--cag", "--set", "TEST.NMS", "0.4", "--parallel_type", "1"])
    files, pairs = checkpoint_settings(args, ROOT / "cfgs")
    assert files == [str(ROOT / "cfgs" / "large_scale.yml")] and pairs == ["CLASS_AGNOSTIC", "True", "TEST.NMS", "0.4"]
    assert load_detector(checkpoint, cfg_files=files).cfg.TEST.SCALES == [800]
    refused = run("test_net.py", "--load_name", str(checkpoint), "--data_dir", data_dir, "--cag")
    assert refused.returncode == 2 and "CLASS_AGNOSTIC: False (checkpoint) vs True" in refused.stderr
    image = cv2.imread(str(next((Path(data_dir) / "shapes" / "JPEGImages").glob("test_*.jpg"))))
    cv2.imwrite(str(tmp_path / "a.jpg"), image)
    flags = ["--vis", "--mGPUs", "--parallel_type", "0", "--webcam_num", "-1", "--image_dir", str(tmp_path)]
    demo = run("demo.py", "--load_name", str(checkpoint), *flags)
    assert demo.returncode == 0, demo.stderr
    assert (tmp_path / "a_det.jpg").is_file() and "--parallel_type is not needed" in demo.stdout


def script_flags(script: str) -> list[str]:
    """Every option string of a script's parser."""
    import argparse

    captured = {}

    def grab(self, argv=None, namespace=None):
        captured["parser"] = self
        raise SystemExit(0)

    original = argparse.ArgumentParser.parse_args
    argparse.ArgumentParser.parse_args = grab
    try:
        with pytest.raises(SystemExit):
            load_script(script).parse_args([])
    finally:
        argparse.ArgumentParser.parse_args = original
    return [o for a in captured["parser"]._actions for o in a.option_strings if o not in ("-h", "--help")]


@pytest.mark.parametrize("script", ["trainval_net.py", "test_net.py", "demo.py"])
def test_every_flag_reaches_the_script_under_torchrun(script):
    """torchrun's own parser takes abbreviations of its options: the original's --r and --s are
    ambiguous there, so they have long spellings (--resume, --session) that pass through."""
    from torch.distributed.run import get_args_parser

    flags = script_flags(script)
    short_only = {"--r": "--resume", "--s": "--session"}
    for flag in flags:
        if flag in short_only:
            assert short_only[flag] in flags
            continue
        args = get_args_parser().parse_args(["--nproc_per_node", "2", script, flag, "1"])
        assert args.training_script == script and args.training_script_args == [flag, "1"], flag


def test_cuda_without_a_gpu_is_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    for script in ("trainval_net.py", "test_net.py", "demo.py"):
        result = run(script, "--cuda", "--data_dir", str(tmp_path))
        assert result.returncode == 2 and "Traceback" not in result.stderr, script
        assert (
            result.stderr.strip()
            == "error: --cuda: PyTorch sees no CUDA GPU on this machine; drop --cuda to run on the CPU"
        )
    mgpus = run("trainval_net.py", "--mGPUs", "--data_dir", str(tmp_path))
    assert mgpus.returncode == 2 and "--mGPUs needs CUDA GPUs" in mgpus.stderr


def test_without_dataset_the_checkpoint_is_found_and_says_what_it_was_trained_on(trained, tmp_path):
    """The original's demo command line names no --dataset: the one dataset folder holding the
    named checkpoint is taken, and test_net.py evaluates on the dataset the checkpoint names."""
    data_dir, models, _ = trained
    flags = ["--net", "tiny", "--load_dir", str(models), "--checksession", "1", "--checkepoch", "1"]
    evaluated = run("test_net.py", *flags, "--checkpoint", "12", "--data_dir", data_dir, "--output_dir", str(tmp_path))
    assert evaluated.returncode == 0, evaluated.stderr
    assert "found " in evaluated.stdout and "Mean AP = " in evaluated.stdout
    assert (tmp_path / "tiny" / "shapes" / "faster_rcnn_1_1_12" / "ap.json").is_file()
    missing = run(
        "demo.py", "--net", "tiny", "--load_dir", str(models), "--checksession", "3", "--image_dir", str(tmp_path)
    )
    assert missing.returncode == 2 and "no dataset folder under" in missing.stderr
