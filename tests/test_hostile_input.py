"""Hostile configs and secrets: one readable line and a documented exit code, and no secret shown.

Every malformed setting gives exactly one line on stderr, ``gtom: error: ...``, of a sane length,
with exit code 2 (command line, unreadable file), 3 (not TOML), 4 (unknown key), 5 (bad value),
6 (unknown sink) or 10 (a connection string pymongo cannot parse): never 1, "unexpected" or a
traceback. No password, token, header value or HMAC key is ever echoed, whatever the sink's
scheme, and whatever a sink answers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.webhook_server import WebhookServer

GTOM = [sys.executable, "-m", "gtom"]
SECRET = "s3cr3t-V4lue-xyz"
#: The longest error line gtom may print.
LINE_MAX = 1200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gtom(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("GTOM_")}
    environ.update(env or {})
    return subprocess.run(
        [*GTOM, *args], capture_output=True, text=True, timeout=timeout, env=environ
    )


def assert_one_line(result: subprocess.CompletedProcess[str], codes: set[int]) -> str:
    assert result.returncode in codes, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines[:5]
    line = lines[0]
    assert line.startswith("gtom: error: "), line[:300]
    assert "Traceback" not in result.stderr and "unexpected" not in line
    assert len(line) <= LINE_MAX, len(line)
    return line


# -- hostile configs -------------------------------------------------------------------------

HOSTILE_FILES: dict[str, tuple[bytes, int]] = {
    "timeout inf": (b"[source]\ntimeout = inf\n", 5),
    "timeout nan": (b"[source]\ntimeout = nan\n", 5),
    "timeout -inf": (b"[sink]\ntimeout = -inf\n", 5),
    "timeout absurd": (b"[source]\ntimeout = 1e300\n", 5),
    "timeout negative": (b"[source]\ntimeout = -1\n", 5),
    "batch_wait inf": (b"[delivery]\nbatch_wait = inf\n", 5),
    "retry_max_wait huge": (b"[delivery]\nretry_max_wait = 1e20\n", 5),
    "batch_size huge": (b"[delivery]\nbatch_size = 99999999999999999\n", 5),
    "batch_size float": (b"[delivery]\nbatch_size = 1.5\n", 5),
    "batch_size string": (b'[delivery]\nbatch_size = "many"\n', 5),
    "max_bytes huge": (b"[sink]\nmax_bytes = 9223372036854775807\n", 5),
    "backups negative": (b"[sink]\nbackups = -3\n", 5),
    "maxlen huge": (b"[sink]\nmaxlen = 9223372036854775807\n", 5),
    "deeply nested array": (b"[source]\nnamespaces = " + b"[" * 100_000 + b"]" * 100_000, 3),
    "deeply nested inline table": (b"[source]\nx = " + b"{a=" * 5_000 + b"1" + b"}" * 5_000, 3),
    "not utf-8": (b'[source]\nuri = "\xff\xfe\xfa"\n', 3),
    "utf-16 with a BOM": ("[source]\nuri = 'x'\n".encode("utf-16"), 3),
    "not toml": (b"[source\nuri = ", 3),
    "binary garbage": (bytes(range(256)) * 40, 3),
    "unknown section": (b"[sauce]\nuri = 'x'\n", 4),
    "unknown key": (b"[source]\nurl = 'x'\n", 4),
    "huge unknown key": (b"[source]\n" + b"k" * 10_000_000 + b" = 1\n", 4),
    "huge sink type": (b"[sink]\ntype = '" + b"x" * 10_000_000 + b"'\n", 6),
    "huge namespace": (b"[source]\nnamespaces = ['" + b"." * 10_000_000 + b"']\n", 5),
    "section is a value": (b"source = 5\n", 3),
    "namespaces a string": (b"[source]\nnamespaces = 5\n", 5),
    "namespaces nested": (b"[source]\nnamespaces = [[1, [2, [3]]]]\n", 5),
    "headers a list": (b"[sink]\ntype = 'webhook'\nurl = 'http://h'\nheaders = [1, 2]\n", 5),
    "format unknown": (b"[delivery]\nformat = 'yaml'\n", 5),
    "metrics listen bad": (b"[metrics]\nlisten = 'nowhere'\n", 5),
    "metrics port huge": (b"[metrics]\nlisten = '127.0.0.1:99999999999'\n", 5),
    "store unknown": (b"[checkpoint]\nstore = 'cloud'\n", 5),
    "uri not a string": (b"[source]\nuri = 42\n", 5),
    "uri unparseable": (b"[source]\nuri = 'mongodb://:::'\n", 10),
    "uri not mongodb": (b"[source]\nuri = 'http://localhost'\n", 10),
    "checkpoint uri bad": (b"[checkpoint]\nstore = 'mongodb'\nuri = 'mongodb://a:b:c'\n", 10),
    "nats target with a space": (
        b"[sink]\ntype = 'nats'\nurl = 'nats://h:1'\ntarget = 'a {namespace}'\n",
        5,
    ),
    "kafka target with a slash": (b"[sink]\ntype = 'kafka'\nurl = 'h:1'\ntarget = 'a/{db}'\n", 5),
    "target with an unknown field": (b"[sink]\ntarget = '{nope}'\n", 5),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_FILES))
def test_a_hostile_config_file_is_one_line_and_a_documented_exit_code(
    tmp_path: Path, case: str
) -> None:
    content, code = HOSTILE_FILES[case]
    path = tmp_path / "gtom.toml"
    path.write_bytes(content)
    for command in ("check-config", "run"):
        assert_one_line(gtom(command, "--config", str(path)), {code})


def test_a_missing_or_unreadable_config_file_is_exit_2(tmp_path: Path) -> None:
    assert_one_line(gtom("check-config", "--config", str(tmp_path / "nope.toml")), {2})
    assert_one_line(gtom("check-config", "--config", str(tmp_path)), {2})  # a directory


@pytest.mark.parametrize(
    ("env", "code"),
    [
        ({"GTOM_SOURCE_TIMEOUT": "inf"}, 5),
        ({"GTOM_SOURCE_TIMEOUT": "NaN"}, 5),
        ({"GTOM_DELIVERY_BATCH_SIZE": "1e9"}, 5),
        ({"GTOM_SINK_TYPE": "x" * 100_000}, 6),
        ({"GTOM_SOURCE_NAMESPACES": ".,."}, 5),
    ],
)
def test_hostile_environment_values_are_one_line_too(env: dict[str, str], code: int) -> None:
    assert_one_line(gtom("check-config", env=env), {code})


# -- secrets ---------------------------------------------------------------------------------


def assert_no_secret(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in (SECRET, *secrets):
        assert secret not in result.stderr and secret not in result.stdout, result.stderr


@pytest.mark.parametrize(
    ("flags", "env", "code"),
    [
        # a webhook URL with a typo in its scheme, with a password in it
        (["--sink", "webhook", "--sink-url", f"htps://user:{SECRET}@hooks.example.com/x"], {}, 5),
        # a header that is not NAME=VALUE
        (
            ["--sink", "webhook", "--sink-url", "http://h"],
            {"GTOM_SINK_HEADERS": f"Authorization: Bearer {SECRET}"},
            5,
        ),
        # an HMAC key of the wrong type
        (["--sink", "webhook", "--sink-url", "http://h"], {"GTOM_SINK_SECRET": ""}, None),
        # a MongoDB URI whose password holds an unescaped '/'
        (["--uri", f"mongodb://user:{SECRET[:6]}/{SECRET[6:]}@localhost/"], {}, 10),
        (["--uri", f"mongodb://user:{SECRET}@localhost:notaport/"], {}, 10),
        (
            ["--checkpoint-store", "mongodb", "--checkpoint-uri", f"mongodb://u:{SECRET}@h:x/"],
            {},
            10,
        ),
    ],
    ids=["webhook-url", "header", "empty-secret", "uri-slash", "uri-port", "checkpoint-uri"],
)
def test_config_errors_never_echo_a_secret(
    flags: list[str], env: dict[str, str], code: int | None
) -> None:
    result = gtom("check-config", *flags, env=env)
    if code is not None:
        assert_one_line(result, {code})
    assert_no_secret(result, SECRET[:6], SECRET[6:])


def test_a_secret_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "gtom.toml"
    path.write_text(
        "[sink]\ntype = 'webhook'\nurl = 'http://h'\nsecret = 987654321012\n"
        "headers = { Authorization = 123456789987 }\n"
    )
    result = gtom("check-config", "--config", str(path))
    assert_one_line(result, {5})
    assert_no_secret(result, "987654321012", "123456789987")


def test_check_config_masks_every_secret_option_of_a_uri() -> None:
    uri = (
        f"mongodb://app:{SECRET}@localhost/?tls=true&tlsCertificateKeyFilePassword={SECRET}2"
        f"&authMechanism=MONGODB-AWS&authMechanismProperties=AWS_SESSION_TOKEN:{SECRET}3"
    )
    result = gtom("check-config", "--uri", uri)
    assert result.returncode == 0, result.stderr
    assert "config OK" in result.stdout
    assert_no_secret(result, f"{SECRET}2", f"{SECRET}3")


@pytest.mark.parametrize("sink", ["nats", "redis"])
def test_a_broker_url_password_is_not_printed_when_the_broker_is_unreachable(
    tmp_path: Path, sink: str
) -> None:
    url = f"{sink}://user:{SECRET}@127.0.0.1:{free_port()}"
    result = gtom(
        "run",
        *("--sink", sink, "--sink-url", url),
        *("--checkpoint-path", str(tmp_path / "cp.json"), "--metrics-listen", "off"),
    )
    assert_one_line(result, {16})
    assert_no_secret(result)


def test_a_refusal_that_echoes_the_request_does_not_print_the_configured_token(
    tmp_path: Path, server: object, db_name: str, client: object
) -> None:
    from tests.conftest import TestServer

    assert isinstance(server, TestServer)
    hook = WebhookServer()
    hook.status = 400
    echo = {"Authorization": f"Bearer {SECRET}", "X-Key": f"{SECRET}9"}
    hook.reply = json.dumps({"error": "bad request", "echo": echo}).encode()
    try:
        proc = subprocess.Popen(
            [
                *GTOM,
                "run",
                "--uri",
                server.uri,
                "--ns",
                db_name,
                "--sink",
                "webhook",
                "--sink-url",
                hook.url,
                "--sink-headers",
                f"Authorization=Bearer {SECRET}",
                "--sink-headers",
                f"X-Key={SECRET}9",
                "--checkpoint-path",
                str(tmp_path / "cp.json"),
                "--metrics-listen",
                "off",
                "--delivery-batch-wait",
                "0.05",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        import time

        deadline = time.monotonic() + 30
        while hook.received == 0 and proc.poll() is None:
            client[db_name].c.insert_one({"x": 1})  # type: ignore[index]
            assert time.monotonic() < deadline
            time.sleep(0.3)
        out, err = proc.communicate(timeout=30)
    finally:
        hook.close()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert result.returncode == 18, err
    assert err.strip().splitlines()[-1].startswith("gtom: error: ")
    assert_no_secret(result, f"{SECRET}9")
