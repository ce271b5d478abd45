"""Helpers and fixtures shared by the export tests: real audits of the bundled photos with the bundled
model, and a real S3-protocol server (moto's standalone server) on 127.0.0.1 with authentication on,
started here and stopped after. ``conftest.py`` beside it registers the fixtures; test modules import the
constants and helpers from here."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import free_port, wait_for_port

from ov_explain.explain import Explainer
from ov_explain.runs.audit.run import AuditOptions, run_audit
from ov_explain.runs.dataset import LabelResolver, read_dataset

BUCKET = "audits"
#: Class names for the hostile audit: chelsea's prediction and coffee's class climb and script.
HOSTILE = {282: "../../x", 967: '<script>alert("x")</script>'}


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its SHA-256: to prove an export changed nothing there."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def objects_under(client, prefix: str) -> dict[str, dict]:
    """Key -> {ETag, LastModified, Size} of every object under ``prefix``."""
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"]] = {"ETag": item["ETag"], "LastModified": item["LastModified"], "Size": item["Size"]}
    return found




@pytest.fixture(scope="session")
def bundled_audit(tmp_path_factory, classifier, photos_dir) -> Path:
    """The README's main job: the bundled photos audited by the bundled model (raw maps kept, the default)."""
    out = tmp_path_factory.mktemp("export") / "audit"
    run_audit(read_dataset(photos_dir / "ground_truth.csv"), Explainer(classifier), out,
              options=AuditOptions(grids=False, report=False))
    return out


@pytest.fixture(scope="session")
def hostile_audit(tmp_path_factory, classifier, photos_dir) -> Path:
    """The same audit where two classes are named to climb directories and to inject a script."""
    from ov_explain import Classifier

    names = list(classifier.labels)
    for index, name in HOSTILE.items():
        names[index] = name
    renamed = Classifier(classifier.files.model, device="CPU", labels=names, cache_dir=None)
    out = tmp_path_factory.mktemp("hostile") / "audit"
    resolver = LabelResolver(names, 1000, {"espresso": "967"})  # coffee's label, to the renamed class
    run_audit(read_dataset(photos_dir / "ground_truth.csv"), Explainer(renamed), out, resolver=resolver,
              options=AuditOptions(grids=False, report=False))
    return out


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on 127.0.0.1:<free port> that checks credentials: an IAM user with a key is made
    in its first (unauthenticated) requests, then every request must be signed with that key."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("s3fs")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "server.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    with open(log, "wb") as handle:
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=handle, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for_port(port, server, 60, lambda: log.read_text()[-2000:])
        anonymous = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup",
                         aws_secret_access_key="setup")
        iam = boto3.client("iam", **anonymous)
        iam.create_user(UserName="ov-explain-ci")
        key = iam.create_access_key(UserName="ov-explain-ci")["AccessKey"]
        iam.put_user_policy(UserName="ov-explain-ci", PolicyName="everything", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        credentials = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **credentials)
        client.create_bucket(Bucket=BUCKET)
        yield {"endpoint": endpoint, "client": client, "env": {"AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                                                               "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
                                                               "AWS_DEFAULT_REGION": "us-east-1"}}
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The server's credentials in the environment, where s3fs (through botocore) looks for them."""
    for name, value in s3_server["env"].items():
        monkeypatch.setenv(name, value)
    return s3_server

