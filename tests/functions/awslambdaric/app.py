"""Handler run by awslambdaric (the official Python runtime client) under provided.al2023."""

import os


def handler(event, context):
    if isinstance(event, dict) and event.get("fail"):
        raise RuntimeError("awslambdaric handler failed on purpose")
    print("awslambdaric handler ran")
    return {
        "runtime": "awslambdaric",
        "event": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "pid": os.getpid(),
    }
