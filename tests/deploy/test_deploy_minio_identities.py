"""Least privilege in the MinIO manifests: three identities, a read-only device, no console."""

from __future__ import annotations

import json
import shutil

from kfp_edge.app.cli import main


def _index(objects):
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_devices_get_read_only_keys_and_the_pipeline_never_the_root_user(rendered):
    for name, objects in rendered.items():
        index = _index(objects)
        policies = index[("ConfigMap", "kfp-edge-minio-policies")]["data"]
        device = json.loads(policies["device.json"])
        actions = {a for s in device["Statement"] for a in s["Action"]}
        assert actions == {"s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject"}, name
        publisher = json.loads(policies["publisher.json"])
        writes = [s for s in publisher["Statement"] if "s3:PutObject" in s["Action"]]
        assert [s["Resource"] for s in writes] == [["arn:aws:s3:::kfp-edge-models/models/*"]]
        assert not any("Delete" in a for s in publisher["Statement"] for a in s["Action"])
        job = index[("Job", "kfp-edge-minio-setup")]["spec"]["template"]["spec"]
        refs = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in job["containers"][0]["env"]
            if "valueFrom" in e
        }
        assert refs == {"kfp-edge-minio-root", "kfp-edge-minio", "kfp-edge-minio-device"}
        assert 'attach store kfp-edge-device --user "$DEVICE_ACCESS_KEY"' in policies["setup.sh"]


def test_console_is_closed_and_only_labelled_pods_reach_the_s3_port(rendered):
    for name, objects in rendered.items():
        index = _index(objects)
        service = index[("Service", "kfp-edge-minio")]
        assert [p["port"] for p in service["spec"]["ports"]] == [9000], name
        container = index[("Deployment", "kfp-edge-minio")]["spec"]["template"]["spec"][
            "containers"
        ][0]
        assert "--console-address" not in container["args"]
        assert {"name": "MINIO_BROWSER", "value": "off"} in container["env"]
        policy = index[("NetworkPolicy", "kfp-edge-minio")]["spec"]
        assert policy["policyTypes"] == ["Ingress"]
        (rule,) = policy["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": 9000}]
        assert rule["from"] == [{"podSelector": {"matchLabels": {"kfp-edge/s3-client": "true"}}}]


def test_check_credentials_refuses_placeholders_and_shared_keys(manifests_copy, tmp_path, capsys):
    base = tmp_path / "base"
    shutil.copytree(manifests_copy / "base", base)
    for example in base.glob("*.env.example"):  # deploying the examples as they are
        shutil.copy(example, example.with_name(example.name.removesuffix(".example")))
    assert main(["check-credentials", str(base)]) == 2
    err = capsys.readouterr().err
    assert "still a placeholder" in err and len(err.strip().splitlines()) == 6
    (base / "minio-root.env").write_text("rootuser=root-7f3a\nrootpassword=Zq8-test-root-pass-91\n")
    (base / "minio-credentials.env").write_text("accesskey=pub-4e1\nsecretkey=short\n")
    assert main(["check-credentials", str(base)]) == 2
    assert "secretkey is shorter than 16" in capsys.readouterr().err
    (base / "minio-credentials.env").write_text(
        "accesskey=pub-4e1\nsecretkey=Pb-test-pub-pass-0042\n"
    )
    (base / "minio-device.env").write_text("accesskey=pub-4e1\nsecretkey=Dv-test-device-pass-77\n")
    assert main(["check-credentials", str(base)]) == 2
    assert "accesskey is the same as minio-credentials.env accesskey" in capsys.readouterr().err
    (base / "minio-credentials.env").write_text(
        "accesskey=pub-4e1\nsecretkey=Pb-test-pub-pass-0042\n"
    )
    (base / "minio-device.env").write_text("accesskey=dev-9c2\nsecretkey=Dv-test-device-pass-77\n")
    assert main(["check-credentials", str(base)]) == 0
