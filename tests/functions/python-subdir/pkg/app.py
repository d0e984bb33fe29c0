"""A handler in a subfolder of the package: `pkg/app.handler`."""

import os


def handler(event, context):
    return {"where": "pkg/app", "file": os.path.relpath(__file__, os.environ.get("LAMBDA_TASK_ROOT", "/")), "event": event}
