"""`ptame` itself: its help, its error policy and its entry points."""

import os
import platform
import re
import runpy
import shutil
import subprocess
import sys

import pytest

from keras_ptame import cli

COMMANDS = ("train", "tune", "explain", "evaluate", "export", "demo")


def test_help_lists_every_command(ptame):
    result = ptame("--help")
    assert result.code == 0
    for command in COMMANDS:
        assert command in result.out
    assert "Exit codes" in result.out


@pytest.mark.parametrize(
    "command, options",
    [
        ("train", ["--classifier", "--auxiliary", "--data", "--recipe", "--fill"]),
        ("tune", ["--validation-data", "--objective", "--max-trials", "--directory"]),
        ("explain", ["--model", "--output", "--classes", "--alpha", "--overwrite"]),
        ("evaluate", ["--classifier", "--data", "--method", "--imputation"]),
        ("export", ["--model", "--output", "--overwrite", "--image-size"]),
        ("demo", ["--output", "--train-count", "--quick", "--quiet"]),
    ],
)
def test_subcommand_help_explains_options(ptame, command, options):
    result = ptame(command, "--help")
    assert result.code == 0
    assert result.out.startswith(f"usage: ptame {command}")
    for option in options:
        assert option in result.out


@pytest.mark.parametrize("command", ["train", "tune", "explain", "evaluate", "export"])
def test_image_size_is_one_side_in_every_command(command, ptame):
    # One builder: `--image-size SIDE`, of square images, whichever command.
    assert "--image-size SIDE " in ptame(command, "--help").out
    args = cli.build_parser().parse_args(
        ["export", "--model", "e.keras", "--output", "out", "--image-size", "64"]
    )
    assert args.image_size == 64


def test_no_command_is_a_usage_error(ptame):
    result = ptame()
    assert result.code == 2
    assert "usage" in result.err


@pytest.mark.parametrize(
    "argv, match",
    [
        (["explain", "--model", "x.keras", "a.png", "--batch-size", "0"], "positive"),
        (["evaluate", "--classifier", "c.keras", "--data", "d.npz"], "--method"),
        (["demo", "--seed", "one"], "invalid int value"),
        (["no_such_command"], "invalid choice"),
    ],
)
def test_bad_argument_is_a_usage_error(ptame, argv, match):
    ptame(*argv).assert_user_error(match)


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "--model", "m.keras", "--output", "x"],
        [
            "evaluate",
            "--classifier",
            "c.keras",
            "--data",
            "d.npz",
            "--method",
            "random",
        ],
        ["demo"],
    ],
)
def test_internal_error_exits_1_with_traceback(ptame, monkeypatch, argv):
    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(getattr(cli, argv[0]), "run", broken)
    result = ptame(*argv)
    assert result.code == 1
    assert "Traceback" in result.err and "RuntimeError: a bug" in result.err
    assert f"ptame {argv[0]}: internal error" in result.err


def test_interrupt_exits_130(ptame, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.demo, "run", interrupted)
    result = ptame("demo")
    assert result.code == 130
    assert "interrupted" in result.err


def test_missing_optional_package_is_a_user_error(ptame, monkeypatch):
    def needs_a_package(args):
        raise ModuleNotFoundError("No module named 'cv2'", name="cv2")

    monkeypatch.setattr(cli.demo, "run", needs_a_package)
    ptame("demo").assert_user_error("needs the package 'cv2'")


# runpy warns that the package imported the module before running it.
@pytest.mark.filterwarnings("ignore:.*found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize(
    "module, command",
    [
        ("keras_ptame.cli", []),
        ("keras_ptame.evaluation", ["evaluate"]),
        ("keras_ptame.demo", ["demo"]),
    ],
)
def test_module_entry_points_run_the_command(monkeypatch, capsys, module, command):
    # `python -m keras_ptame.evaluation` and `python -m keras_ptame.demo` are
    # documented in the README: they are `ptame evaluate` and `ptame demo`.
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: " + " ".join(["ptame", *command]))


def test_importing_the_command_changes_nothing(monkeypatch):
    # The log settings belong to `main` and the launcher; an import (by a
    # notebook, a test, `kp.cli`) must leave the environment as it was.
    for name in list(sys.modules):
        if name == "keras_ptame.cli" or name.startswith("keras_ptame.cli."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "argv", ["ptame", "demo", "--help"])
    for name in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY", "GLOG_minloglevel"):
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    stderr = os.dup(2)
    try:
        import keras_ptame.cli  # noqa: F401

        assert os.path.sameopenfile(2, stderr)  # no filter on stderr
    finally:
        os.close(stderr)
    assert dict(os.environ) == before


def test_console_script(tmp_path):
    script = shutil.which("ptame")
    if script is None:
        pytest.skip("the `ptame` script is not installed (pip install -e .)")
    result = subprocess.run(
        [script, "explain", "--model", str(tmp_path / "missing.keras"), "x.png"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "No such explainer file" in result.stderr
    assert "Traceback" not in result.stderr


def test_console_script_is_quiet_while_tensorflow_loads(tmp_path):
    script = shutil.which("ptame")
    if script is None:
        pytest.skip("the `ptame` script is not installed (pip install -e .)")
    pytest.importorskip("tensorflow")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    for name in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel"):
        env.pop(name, None)
    result = subprocess.run(
        [script, "export", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: ptame export")
    # TensorFlow logs as it loads (CPU features, CUDA drivers): none shown.
    assert not re.search(r"^[IWE]\d{4} |absl::InitializeLog", result.stderr, re.M)


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"),
    reason="ptame turns oneDNN's kernels on on x86-64 only",
)
@pytest.mark.parametrize("setting, on", [(None, True), ("0", False)])
def test_console_script_turns_onednn_kernels_on_unless_told(setting, on):
    script = shutil.which("ptame")
    if script is None:
        pytest.skip("the `ptame` script is not installed (pip install -e .)")
    pytest.importorskip("tensorflow")
    # TensorFlow says which kernels it uses as it loads (shown here).
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "0"}
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    if setting is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = setting
    result = subprocess.run(
        [script, "--native-logs", "export", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert ("oneDNN custom operations are on" in result.stderr) == on
