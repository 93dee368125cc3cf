"""``kfp-edge submit`` refuses a KFP backend older than the compiled pipelines need.

The server is the fake KFP REST API of tests/conftest.py (no KFP server runs here); its healthz
answers like the real API server's handler (``commit_sha``, ``tag_name``, ``multi_user``).
"""

import pytest

from kfp_edge.app import cli, submit
from kfp_edge.pipelines.edge_pipeline import MIN_KFP_BACKEND

pytestmark = pytest.mark.usefixtures("isolated_kfp_context")


@pytest.mark.parametrize(
    ("tag", "refused"),
    [("2.4.1", True), ("2.5.0-rc.1", True), ("1.8.5", True), ("2.5.0", False), ("v2.15.2", False)],
)
def test_release_comparison(tag, refused):
    if refused:
        with pytest.raises(submit.BackendTooOld, match=f"is {tag}; .* need {MIN_KFP_BACKEND}"):
            submit.check_backend(tag, MIN_KFP_BACKEND)
    else:
        submit.check_backend(tag, MIN_KFP_BACKEND)


def test_an_unversioned_server_only_warns():
    with pytest.warns(UserWarning, match="does not report a release"):
        submit.check_backend("", MIN_KFP_BACKEND)


def test_the_version_is_read_from_the_server(fake_kfp):
    fake_kfp.tag_name = "2.14.3"
    client = submit.make_client(fake_kfp.url)
    assert submit.backend_version(client) == "2.14.3"


def test_cli_refuses_an_old_backend_in_one_line_before_any_run(fake_kfp, tmp_path, capsys):
    fake_kfp.tag_name = "2.4.0"
    code = cli.main(["submit", "--host", fake_kfp.url, "--param", "epochs=3"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and "the KFP backend is 2.4.0" in err
    assert "Traceback" not in err
    assert fake_kfp.runs == [] and fake_kfp.experiments == []
