"""The export tests' fixtures (audits to export, the local S3 server), defined in export_support.py."""

from export_support import bundled_audit, hostile_audit, s3_env, s3_server  # noqa: F401 (fixtures)
