import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_import_tf_selects_keras_2():
    r = _run(
        "from kfp_edge.tf_env import import_tf\n"
        "tf, keras = import_tf()\n"
        "import os; print(os.environ['TF_USE_LEGACY_KERAS'], keras.__version__.split('.')[0])"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-2:] == ["1", "2"]


def test_missing_tf_keras_fails_fast_with_a_clear_message():
    # Make `import tf_keras` fail the way it does when the package is not installed.
    r = _run(
        "import sys; sys.modules['tf_keras'] = None\n"
        "from kfp_edge.tf_env import import_tf\n"
        "import_tf()"
    )
    assert r.returncode != 0
    assert "tf_keras is not installed" in r.stderr and "kfp-edge[tf]" in r.stderr
    assert "import tensorflow" not in r.stderr  # failed before TensorFlow was loaded


def test_tensorflow_imported_first_without_legacy_flag_is_refused():
    r = _run(
        "import sys, types; sys.modules['tensorflow'] = types.ModuleType('tensorflow')\n"
        "from kfp_edge.tf_env import import_tf\n"
        "import_tf()"
    )
    assert r.returncode != 0 and "TF_USE_LEGACY_KERAS=1" in r.stderr
