"""``cryptotrace models``: publish a model version to the Redis registry, show what is published.

Wired into ``app.cli`` as a subcommand: ``add_arguments(parser)`` fills its parser, ``run``
executes it. Publishing verifies the artifact in ``CRYPTOTRACE_MODEL_DIR`` first (it must
load here), then every worker with the same ``CRYPTOTRACE_REDIS_URL`` and app id loads it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from redis.exceptions import RedisError

from app.settings import Settings
from models.errors import ConfigError

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_command", required=True)
    p = sub.add_parser("publish", help="verify a model artifact and make every worker load it")
    p.add_argument("version", help="artifact directory name under the model dir, e.g. m-f20d2433a3b2")
    sub.add_parser("current", help="print the published model record (JSON)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    from app.registry import current, publish

    try:
        if args.models_command == "publish":
            record = publish(settings, args.version)
        else:
            record = current(settings) or {}
    except (ConfigError, OSError, RedisError) as exc:  # a message, not a traceback
        logger.error("models %s failed: %s", args.models_command, exc)
        return 2
    sys.stdout.write(json.dumps(record) + "\n")
    return 0
