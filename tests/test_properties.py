"""Properties (hypothesis): what comes off the wire or the disk never crashes the CLI.

- ``decode_event`` on arbitrary event types and payloads (bytes, text with
  lone surrogates, JSON of any shape, near-valid mutations of real events):
  a known event of that type, or ``UnknownEventError`` / ``msgspec.DecodeError``
  / ``msgspec.ValidationError``, nothing else.
- The event stream client, where an SSE becomes an event or a skip
  (``EventStream._accept``): never raises, ids only grow, warnings never carry
  the token. And the whole client path (bytes from a server, split anywhere,
  with any status, content type and charset, through httpx-sse and the
  stream's guards): it yields known events with growing ids and ends with the
  project's own errors (``CompartmentError``, ``NoEventStream``), nothing else.
- compartment.yml, adding to the properties of tests/test_project.py (arbitrary
  text, arbitrary documents, line-level mutations of a valid file): byte-level
  mutations (truncation, inserted bytes, invalid UTF-8, spliced slices) of the
  example project's file and of the full valid file give a Descriptor or a
  ProjectFileError whose every problem has a line.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest
from httpx_sse import ServerSentEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compartment_cli.client.api import ApiClient, RetryPolicy
from compartment_cli.client.connection import resolve_connection
from compartment_cli.client.events import EventStream, NoEventStream
from compartment_cli.errors import CompartmentError, UsageError
from compartment_cli.models.api import (
    DeployResponse,
    ListResponse,
    ReadOperationSummary,
    ReadSummary,
    RunResponse,
    StatusResponse,
)
from compartment_cli.models.config import ConfigFileError, read_config, record_remote
from compartment_cli.models.events import (
    RUN_COMPLETED_EVENT,
    STATUS_EVENT,
    STEP_EVENT,
    DeploymentEvent,
    RunCompletedEvent,
    StatusEvent,
    StepEvent,
    UnknownEventError,
    decode_event,
    encode_event_data,
    event_type_of,
    run_id_of,
)
from compartment_cli.project import PROJECT_FILE
from tests.support import EXAMPLE
from tests.test_project import FULL, check_outcome

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
TOKEN = "tok-Secret-4f9a1c"
KNOWN_TYPES = (STEP_EVENT, STATUS_EVENT, RUN_COMPLETED_EVENT)
ALLOWED = (UnknownEventError, msgspec.DecodeError, msgspec.ValidationError)

# --- real events, the base of the near-valid ones ---------------------------------------

SUMMARY = ReadSummary(
    id="dep_2507fe15dca9f60a84bc",
    service_name="api",
    deployment_run_id="run_1",
    status="running",
    promotion_stage="awaiting_readiness",
    health="pending",
    is_active=False,
    label=None,
    route_url="http://127.0.0.1:41234/",
    failure_message=None,
    created_at="2025-01-01T12:00:00.000Z",
    completed_at=None,
    rollback_available=False,
    operation=ReadOperationSummary(
        type="promote", status="running", created_at="2025-01-01T12:00:00.000Z", completed_at=None
    ),
)
REAL_EVENTS: list[DeploymentEvent] = [
    StepEvent(
        deployment_run_id="run_1",
        deployment_id="dep_2507fe15dca9f60a84bc",
        service_name="api",
        step="checking_readiness",
        status="running",
        message="GET /healthz answered 503, retrying",
        at="2025-01-01T12:00:01.204Z",
    ),
    StatusEvent(SUMMARY),
    RunCompletedEvent(
        deployment_run_id="run_1",
        status="failed",
        deployments=[SUMMARY, msgspec.structs.replace(SUMMARY, service_name="web")],
        at="2025-01-01T12:00:02.000Z",
    ),
]
REAL = [(event_type_of(e), json.loads(encode_event_data(e))) for e in REAL_EVENTS]

# --- strategies -------------------------------------------------------------------------

# Text with every code point, lone surrogates included (st.text() leaves them out).
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
EVENT_TYPES = st.one_of(st.sampled_from(KNOWN_TYPES), ANY_TEXT, st.just("message"))
NEAR_VALUES = st.sampled_from(
    [
        "",
        "succeeded",
        "bogus",
        "active",
        "queued",
        "\u0000",
        "\ud800",
        TOKEN,
        0,
        -1,
        2**64,
        10**400,
        1.5,
        True,
        None,
        [],
        {},
        [None],
        {"type": "x"},
    ]
).map(copy.deepcopy)  # a fresh [] or {} each time: near_valid_document changes them in place
JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        ANY_TEXT,
        NEAR_VALUES,
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(ANY_TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON document (the root is ``()``)."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


@st.composite
def near_valid_document(draw: st.DrawFn, document: Any) -> Any:
    """A real event's JSON with a few changes: a key dropped, a value swapped, a key added..."""
    root = {"": copy.deepcopy(document)}
    for _ in range(draw(st.integers(1, 3))):
        path = ("", *draw(st.sampled_from(paths(root[""]))))
        parent: Any = root
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        operation = draw(st.sampled_from(["drop", "near", "any", "add", "wrap", "deep"]))
        if operation == "drop" and parent is not root:
            del parent[key]
        elif operation == "near":
            parent[key] = draw(NEAR_VALUES)
        elif operation == "any":
            parent[key] = draw(JSON)
        elif operation == "add" and isinstance(parent[key], dict):
            parent[key][draw(ANY_TEXT)] = draw(JSON)
        elif operation == "wrap":
            parent[key] = [parent[key]]
        elif operation == "deep":
            # Nesting deeper than a parser's recursion limit, in a few bytes.
            parent[key] = _DeepMarker(draw(st.sampled_from([100, 1_000, 5_000])))
    return root[""]


class _DeepMarker:
    """Stands for a value nested ``depth`` levels deep (json.dumps cannot write one)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth


def dumps(document: Any) -> str:
    """JSON text of a document, deep markers included."""
    markers: list[_DeepMarker] = []

    def default(value: object) -> str:
        assert isinstance(value, _DeepMarker)
        markers.append(value)
        return f"__deep_{len(markers) - 1}__"

    text = json.dumps(document, default=default, ensure_ascii=False)
    for index, marker in enumerate(markers):
        text = text.replace(f'"__deep_{index}__"', "[" * marker.depth + "]" * marker.depth, 1)
    return text


@st.composite
def byte_mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` truncated, with bytes inserted or flipped, or a slice repeated."""
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["truncate", "insert", "flip", "repeat", "cut"]))
        if operation == "truncate":
            data = data[:at]
        elif operation == "insert":
            data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
        elif operation == "flip" and at < len(data):
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        elif operation == "repeat":
            end = draw(st.integers(at, len(data)))
            data = data[:end] + data[at:end] + data[end:]
        elif operation == "cut":
            end = draw(st.integers(at, len(data)))
            data = data[:at] + data[end:]
    return data


@st.composite
def near_valid_event(draw: st.DrawFn) -> tuple[str, str | bytes]:
    event_type, document = draw(st.sampled_from(REAL))
    if draw(st.booleans()):
        event_type = draw(EVENT_TYPES)
    text = dumps(draw(near_valid_document(document)))
    if draw(st.booleans()):
        return event_type, draw(byte_mutation(text.encode("utf-8", "surrogatepass")))
    return event_type, text


PAYLOADS = st.one_of(
    st.binary(max_size=200),
    ANY_TEXT,
    JSON.map(lambda value: json.dumps(value, ensure_ascii=False)),
    JSON.map(lambda value: json.dumps(value).encode()),
)
EVENTS = st.one_of(st.tuples(EVENT_TYPES, PAYLOADS), near_valid_event())


# --- decode_event -----------------------------------------------------------------------


def decode_outcome(event_type: str, data: str | bytes) -> DeploymentEvent | Exception:
    """What decode_event gives: a known event of that type, or one of the allowed errors."""
    try:
        event = decode_event(event_type, data)
    except ALLOWED as raised:
        error = raised
    else:
        error = None
    if error is not None:
        # UnknownEventError exactly for the types this client does not know.
        assert isinstance(error, UnknownEventError) == (event_type not in KNOWN_TYPES)
        return error
    assert event_type in KNOWN_TYPES
    assert isinstance(event, StepEvent | StatusEvent | RunCompletedEvent)
    assert event_type_of(event) == event_type
    assert isinstance(run_id_of(event), str)
    # What was read can be written and read back the same.
    assert decode_event(event_type, encode_event_data(event)) == event
    return event


def test_real_events_decode_to_themselves() -> None:
    for event in REAL_EVENTS:
        assert decode_event(event_type_of(event), encode_event_data(event)) == event


@PROPERTY_SETTINGS
@given(EVENTS)
def test_decode_event_gives_an_event_or_a_decoding_error(case: tuple[str, str | bytes]) -> None:
    decode_outcome(*case)


@pytest.mark.parametrize("event_type", KNOWN_TYPES)
@pytest.mark.parametrize(
    "data",
    [
        '{"x": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"x": ' + '{"a": ' * 5_000 + "1" + "}" * 5_000 + "}",
        '{"message": "\ud800"}',
        b'{"message": "\xff"}',
        '{"deploymentRunId": ' + "9" * 5_000 + "}",
        '{"at": 1e999}',
    ],
    ids=["deep-arrays", "deep-objects", "lone-surrogate", "invalid-utf8", "huge-int", "inf"],
)
def test_decode_event_edge_cases(event_type: str, data: str | bytes) -> None:
    assert isinstance(decode_outcome(event_type, data), Exception)


# --- the stream client: one SSE at a time -----------------------------------------------

SSE_IDS = st.one_of(
    st.integers(-5, 10**6).map(str),
    st.just(""),
    st.just("9" * 5_000),
    st.just(" 42 "),
    ANY_TEXT.filter(lambda text: "\0" not in text),
)
RETRIES = st.one_of(st.none(), st.integers(), st.just(10**4000), st.just(-(10**4000)))


@st.composite
def sse(draw: st.DrawFn) -> ServerSentEvent:
    event_type, data = draw(EVENTS)
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if draw(st.booleans()):
        text = text.replace("}", f', "leak": "{TOKEN}"}}', 1)
    return ServerSentEvent(event=event_type, data=text, id=draw(SSE_IDS), retry=draw(RETRIES))


def new_stream(warnings: list[str], **options: Any) -> EventStream:
    http = httpx.AsyncClient(
        base_url="http://127.0.0.1:9", headers={"Authorization": f"Bearer {TOKEN}"}, **options
    )
    return EventStream(
        http,
        project="hello",
        environment="green",
        on_warning=warnings.append,
        reconnect_retry=RetryPolicy(attempts=2, first_delay=0.0, max_delay=0.0),
        connect_retry=RetryPolicy(attempts=2, first_delay=0.0, max_delay=0.0),
        max_event_bytes=4096,
    )


@PROPERTY_SETTINGS
@given(st.lists(sse(), min_size=1, max_size=8))
def test_an_sse_becomes_an_event_or_a_skip(events: list[ServerSentEvent]) -> None:
    warnings: list[str] = []
    stream = new_stream(warnings)
    last = -(10**9)
    for item in events:
        accepted = stream._accept(item)
        if accepted is None:
            continue
        event_id, event = accepted
        assert event_id > last
        last = event_id
        assert stream.last_event_id == event_id
        assert decode_outcome(item.event, item.data) == event
    assert all(TOKEN not in warning for warning in warnings)


# --- the stream client: bytes off the wire, through httpx-sse ---------------------------


class Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def frame(event_id: str, event_type: str, data: str | bytes) -> bytes:
    """One SSE block; ``data`` may span lines, each becomes a ``data:`` line."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    lines = [b"data: " + line for line in raw.splitlines()] or [b"data:"]
    head = f"id: {event_id}\nevent: {event_type}\n".encode("utf-8", "surrogatepass")
    return head + b"\n".join(lines) + b"\n\n"


@st.composite
def stream_body(draw: st.DrawFn) -> bytes:
    blocks = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["event", "event", "raw", "ping", "retry"]))
        if kind == "event":
            event_type, data = draw(EVENTS)
            event_id = draw(st.one_of(st.integers(0, 50).map(str), SSE_IDS))
            blocks.append(frame(event_id, event_type, data))
        elif kind == "raw":
            blocks.append(draw(st.binary(max_size=60)))
        elif kind == "ping":
            blocks.append(b": ping\n\n")
        else:
            blocks.append(f"retry: {draw(RETRIES)}\n\n".encode())
    return b"".join(blocks)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


CONTENT_TYPES = st.sampled_from(
    [
        "text/event-stream",
        "text/event-stream; charset=utf-8",
        "text/event-stream; charset=utf-7",
        "text/event-stream; charset=latin-1",
        "text/event-stream; charset=utf-16",
        "text/event-stream; charset=no-such-codec",
        "text/html",
        "",
    ]
)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    body=stream_body(),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
    status=st.sampled_from([200, 200, 200, 204, 401, 404, 500, 502]),
    content_type=CONTENT_TYPES,
)
def test_the_stream_client_yields_events_or_ends_with_its_own_errors(
    body: bytes, cuts: list[int], status: int, content_type: str
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": content_type} if content_type else {}
        return httpx.Response(status, headers=headers, stream=Chunks(split(body, cuts)))

    warnings: list[str] = []
    seen: list[tuple[int, DeploymentEvent]] = []

    async def follow() -> BaseException:
        stream = new_stream(warnings, transport=httpx.MockTransport(answer))
        try:
            with anyio.fail_after(30):
                async with stream:
                    async for item in stream:
                        seen.append(item)
        except (CompartmentError, NoEventStream) as error:
            return error
        raise AssertionError("the stream ended without an error")  # it never ends by itself

    error = anyio.run(follow)
    assert TOKEN not in str(error)
    ids = [event_id for event_id, _ in seen]
    assert ids == sorted(set(ids))
    for _, event in seen:
        assert isinstance(event, StepEvent | StatusEvent | RunCompletedEvent)
    assert all(TOKEN not in warning for warning in warnings)


# --- compartment.yml, byte-level mutations ----------------------------------------------

BASES = [
    (EXAMPLE / PROJECT_FILE).read_bytes(),
    FULL.encode(),
]


@PROPERTY_SETTINGS
@given(st.sampled_from(BASES).flatmap(byte_mutation))
def test_byte_mutations_of_valid_files_give_a_descriptor_or_lines(
    tmp_path: Path, data: bytes
) -> None:
    check_outcome(tmp_path / PROJECT_FILE, data)


@PROPERTY_SETTINGS
@given(st.sampled_from(BASES), st.integers(0, 4_000))
def test_every_truncation_of_a_valid_file(tmp_path: Path, base: bytes, at: int) -> None:
    check_outcome(tmp_path / PROJECT_FILE, base[: at % (len(base) + 1)])


# --- API responses and the CLI config file ----------------------------------------------


def deep_json(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a": ' * depth + b"1" + b"}" * depth


@st.composite
def hostile_body(draw: st.DrawFn) -> bytes:
    """JSON a broken or hostile server may send: deep, not UTF-8, or near an error body."""
    kind = draw(st.sampled_from(["deep", "utf8", "error", "any"]))
    if kind == "deep":
        nested = deep_json(
            draw(st.sampled_from([10, 2_000, 50_000])), draw(st.sampled_from(["array", "object"]))
        )
        where = draw(st.sampled_from(["top", "error", "deployments", "resources", "unknown"]))
        if where == "top":
            return nested
        if where == "error":
            return b'{"error": {"code": "c", "message": "m", "x": ' + nested + b"}}"
        return b'{"%s": %s}' % (where.encode(), nested)
    if kind == "utf8":
        return draw(
            st.sampled_from(
                [
                    b'{"error": {"code": "\xff", "message": "m"}}',
                    b'{"error": {"code": "c", "message": "\xc3\x28"}}',
                    b'{"deploymentRunId": "\xed\xa0\x80"}',
                ]
            )
        )
    if kind == "error":
        return json.dumps(
            {"error": {"code": draw(ANY_TEXT), "message": f"{draw(ANY_TEXT)} {TOKEN}"}},
            ensure_ascii=False,
        ).encode("utf-8", "surrogatepass")
    return draw(
        PAYLOADS.map(lambda p: p if isinstance(p, bytes) else p.encode("utf-8", "surrogatepass"))
    )


RESPONSE_TYPES = [DeployResponse, StatusResponse, ListResponse, RunResponse]


@PROPERTY_SETTINGS
@given(
    status=st.sampled_from([200, 400, 401, 403, 404, 409, 429, 500, 502]),
    content_type=st.sampled_from(["application/json", "text/html", ""]),
    body=hostile_body(),
    type_=st.sampled_from(RESPONSE_TYPES),
)
def test_an_api_response_is_a_value_or_a_compartment_error(
    status: int, content_type: str, body: bytes, type_: type[Any]
) -> None:
    client = ApiClient(
        httpx.AsyncClient(
            base_url="http://127.0.0.1:9", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    )
    request = httpx.Request("GET", "http://127.0.0.1:9/v1/deployments/status")
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.Response(status, headers=headers, content=body, request=request)
    outcome: object
    try:
        outcome = client._decode(response, type_)
    except CompartmentError as error:
        outcome = error
    if isinstance(outcome, CompartmentError):
        assert TOKEN not in outcome.message
        assert status >= 400 or outcome.code == "bad_response"
    else:
        assert status < 400
        assert isinstance(outcome, type_)


@PROPERTY_SETTINGS
@given(
    st.one_of(
        hostile_body(),
        st.just(b'{"currentRemote": "local", "remotes": {"local": {"apiUrl": "\xff"}}}'),
    )
)
def test_a_config_file_is_a_connection_or_a_usage_error_and_can_be_recorded_into(
    tmp_path: Path, data: bytes
) -> None:
    (tmp_path / "config.json").write_bytes(data)
    with contextlib.suppress(ConfigFileError):
        read_config(tmp_path / "config.json")
    outcome: object
    try:
        outcome = resolve_connection(environ={"COMPARTMENT_CLI_CONFIG_DIR": str(tmp_path)})
    except UsageError as error:
        outcome = error
    assert TOKEN not in str(outcome)
    # What `compartment server` does with it at start-up: record itself, or say why not.
    with contextlib.suppress(ConfigFileError):
        record_remote(tmp_path / "config.json", "local", "http://127.0.0.1:9", TOKEN)
        assert read_config(tmp_path / "config.json").remotes["local"].session_token == TOKEN
