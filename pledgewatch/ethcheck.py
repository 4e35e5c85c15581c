"""Check an Ethereum ledger receipt against a node, with nothing but the stdlib.

This is the light verifier's path (``pledgewatch verify --ledger URL``): three JSON-RPC calls
over ``urllib`` — ``eth_chainId``, ``eth_getTransactionByHash(receipt.tx_hash)`` and
``eth_getBlockByNumber(receipt.block_number, false)`` — and one comparison. A receipt checks
out when all of these hold:

- the node's chain id equals ``receipt.chain_id`` and ``receipt.ledger_id`` is
  ``"eip155:<chain id>"``;
- the transaction exists, is mined, its hash is ``receipt.tx_hash``, its ``chainId`` (when the
  node reports one) is the chain id, its block number is ``receipt.block_number`` and its
  input data is exactly ``receipt.payload``;
- the block at ``receipt.block_number`` exists, has the transaction's ``blockHash`` as its
  hash (so the transaction is on the node's canonical chain), lists the transaction, and its
  timestamp × 1000 is ``receipt.block_time_ms``.

``compare_ethereum_receipt`` holds that rule as a pure function over ``OnChainTx`` and
``OnChainBlock``; the web3.py backend (``anchor.ledger.ethereum``) feeds it the same values, so
both paths judge a receipt identically.

The node's answers are untrusted input: the response size is capped, every field is checked
against the JSON-RPC hex encodings before use, redirects are refused, and every request has a
deadline. Errors: ``ProofError`` when the node's chain disagrees with the receipt (or the
receipt is malformed); ``ValidationError`` when the node's answer is malformed;
``PledgewatchError`` when the node cannot be asked (bad URL, unreachable, timeout, HTTP or
JSON-RPC error). Nothing else escapes.
"""

from __future__ import annotations

import http.client
import itertools
import json
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from pledgewatch.anchoring import LedgerReceipt
from pledgewatch.errors import PledgewatchError, ProofError, ValidationError

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
DEFAULT_TIMEOUT_S = 10.0
_MAX_INT64 = 2**63 - 1
_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_QUANTITY = re.compile(r"0x(?:0|[1-9a-fA-F][0-9a-fA-F]{0,63})")
_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_IDS = itertools.count(1)
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


@dataclass(frozen=True, slots=True)
class OnChainTx:
    """A transaction as the node reports it (hashes as lowercase ``0x`` hex)."""

    tx_hash: str
    block_number: int | None
    block_hash: str | None
    input: bytes
    chain_id: int | None


@dataclass(frozen=True, slots=True)
class OnChainBlock:
    """A block header as the node reports it, with its transaction hashes."""

    number: int
    block_hash: str
    timestamp: int
    transactions: tuple[str, ...]


def rpc_endpoint(url: str) -> str:
    """The plain ``http(s)://`` JSON-RPC endpoint of a ledger URL.

    ``ethereum+http(s)://host:port/path?options`` loses the ``ethereum+`` prefix and its query
    (the query holds pledgewatch's options, not the node's); a plain ``http(s)://`` URL is
    used as it is. Anything else is refused.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise PledgewatchError(f"ledger URL: {exc}") from None
    scheme = parts.scheme.lower()
    query = parts.query
    if scheme.startswith("ethereum+"):
        scheme = scheme.removeprefix("ethereum+")
        query = ""
    if scheme not in ("http", "https"):
        raise PledgewatchError(
            f"ledger URL scheme: got {parts.scheme!r}, want ethereum+http, ethereum+https, "
            "http or https"
        )
    if not host:
        raise PledgewatchError("ledger URL: want a host")
    return urlunsplit((scheme, parts.netloc, parts.path, query, ""))


def redact_endpoint(endpoint: str) -> str:
    """``scheme://host[:port]`` of an endpoint, for messages: paths, queries and user info
    often carry API keys (``https://provider.example/v3/<key>``)."""
    parts = urlsplit(endpoint)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or "?"
    host = f"[{host}]" if ":" in host else host
    hidden = "/…" if parts.path.strip("/") or parts.query or parts.username else ""
    return f"{parts.scheme}://{host}{'' if port is None else f':{port}'}{hidden}"


def validate_ethereum_receipt(receipt: LedgerReceipt) -> None:
    """Refuse a receipt that cannot name an Ethereum transaction (``ProofError``; here
    ``expected`` is the form wanted and ``computed`` the receipt's value)."""
    chain_id = receipt.chain_id
    checks: tuple[tuple[bool, str, object, object], ...] = (
        (receipt.backend == "ethereum", "backend", "ethereum", receipt.backend),
        (chain_id is not None and chain_id >= 1, "chain_id", ">= 1", chain_id),
        (
            receipt.ledger_id == f"eip155:{chain_id}",
            "ledger_id",
            f"eip155:{chain_id}",
            receipt.ledger_id,
        ),
        (_HASH.fullmatch(receipt.tx_hash) is not None, "tx_hash", "0x + 64 hex", receipt.tx_hash),
        (0 <= receipt.block_number <= _MAX_INT64, "block_number", ">= 0", receipt.block_number),
        (
            receipt.block_time_ms >= 0 and receipt.block_time_ms % 1000 == 0,
            "block_time_ms",
            "whole seconds x 1000",
            receipt.block_time_ms,
        ),
        (receipt.prev_hash is None, "prev_hash", None, receipt.prev_hash),
        (len(receipt.payload) > 0, "payload", "non-empty", len(receipt.payload)),
    )
    for ok, name, want, got in checks:
        if not ok:
            raise ProofError(
                f"ethereum receipt {name}: got {got!r}, want {want!r}", expected=want, computed=got
            )


def compare_ethereum_receipt(
    receipt: LedgerReceipt, *, chain_id: int, tx: OnChainTx | None, block: OnChainBlock | None
) -> None:
    """Raise ``ProofError`` unless the node's view (chain id, transaction, block at the
    receipt's height) confirms ``receipt``; ``expected`` is the receipt's claim, ``computed``
    the node's value."""
    validate_ethereum_receipt(receipt)
    _same("chain id", receipt.chain_id, chain_id)
    if tx is None:
        raise ProofError(
            "transaction not found on the node (never sent, dropped, reorged away, or another "
            "chain / a restarted dev node)",
            expected=receipt.tx_hash,
            computed=None,
        )
    _same("transaction hash", receipt.tx_hash.lower(), tx.tx_hash)
    if tx.block_number is None or tx.block_hash is None:
        raise ProofError(
            "transaction is pending, not in a block", expected=receipt.block_number, computed=None
        )
    _same("transaction block number", receipt.block_number, tx.block_number)
    if tx.chain_id is not None:
        _same("transaction chain id", receipt.chain_id, tx.chain_id)
    _same("transaction input data (payload)", receipt.payload, tx.input)
    if block is None:
        raise ProofError(
            f"block {receipt.block_number} not found on the node",
            expected=receipt.block_number,
            computed=None,
        )
    _same("block number", receipt.block_number, block.number)
    _same("canonical block hash at the transaction's height", tx.block_hash, block.block_hash)
    if tx.tx_hash not in block.transactions:
        raise ProofError(
            f"block {block.number} does not list the transaction",
            expected=tx.tx_hash,
            computed=None,
        )
    _same("block time (ms)", receipt.block_time_ms, block.timestamp * 1000)


def _same(what: str, expected: object, computed: object) -> None:
    if expected != computed:
        raise ProofError(
            f"ethereum {what} differs from the receipt", expected=expected, computed=computed
        )


def check_ethereum_receipt_stdlib(
    rpc_url: str, receipt: LedgerReceipt, *, timeout_s: float = DEFAULT_TIMEOUT_S
) -> None:
    """Ask the node at ``rpc_url`` (``ethereum+http(s)://…`` or ``http(s)://…``) and return
    only if it confirms ``receipt``; ``timeout_s`` bounds all three requests together."""
    validate_ethereum_receipt(receipt)
    client = _JsonRpc(rpc_endpoint(rpc_url), time.monotonic() + timeout_s)
    chain_id = _quantity(client.call("eth_chainId", []), "eth_chainId")
    tx_value = client.call("eth_getTransactionByHash", [receipt.tx_hash.lower()])
    tx = None if tx_value is None else parse_transaction(tx_value)
    block_value = client.call("eth_getBlockByNumber", [hex(receipt.block_number), False])
    block = None if block_value is None else parse_block(block_value)
    compare_ethereum_receipt(receipt, chain_id=chain_id, tx=tx, block=block)


def parse_transaction(value: object) -> OnChainTx:
    """An ``eth_getTransactionByHash`` result (not null) → ``OnChainTx``."""
    if not isinstance(value, dict):
        raise ValidationError("eth_getTransactionByHash: want an object")
    block_number = value.get("blockNumber")
    block_hash = value.get("blockHash")
    chain_id = value.get("chainId")
    return OnChainTx(
        tx_hash=_hash(value.get("hash"), "transaction hash"),
        block_number=None if block_number is None else _quantity(block_number, "blockNumber"),
        block_hash=None if block_hash is None else _hash(block_hash, "blockHash"),
        input=_data(value.get("input"), "input"),
        chain_id=None if chain_id is None else _quantity(chain_id, "chainId"),
    )


def parse_block(value: object) -> OnChainBlock:
    """An ``eth_getBlockByNumber(n, false)`` result (not null) → ``OnChainBlock``."""
    if not isinstance(value, dict):
        raise ValidationError("eth_getBlockByNumber: want an object")
    transactions = value.get("transactions")
    if not isinstance(transactions, list):
        raise ValidationError("block transactions: want a list of hashes")
    return OnChainBlock(
        number=_quantity(value.get("number"), "block number"),
        block_hash=_hash(value.get("hash"), "block hash"),
        timestamp=_quantity(value.get("timestamp"), "block timestamp"),
        transactions=tuple(_hash(item, "block transaction") for item in transactions),
    )


def _quantity(value: object, what: str) -> int:
    if not isinstance(value, str) or _QUANTITY.fullmatch(value) is None:
        raise ValidationError(f"{what}: got {_short(value)}, want a 0x hex quantity")
    return int(value, 16)


def _hash(value: object, what: str) -> str:
    if not isinstance(value, str) or _HASH.fullmatch(value) is None:
        raise ValidationError(f"{what}: got {_short(value)}, want 0x + 64 hex digits")
    return value.lower()


def _data(value: object, what: str) -> bytes:
    if not isinstance(value, str) or _DATA.fullmatch(value) is None:
        raise ValidationError(f"{what}: got {_short(value)}, want 0x + hex bytes")
    return bytes.fromhex(value[2:])


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class _JsonRpc:
    """One endpoint, one overall deadline, JSON-RPC 2.0 over HTTP POST."""

    def __init__(self, endpoint: str, deadline: float) -> None:
        self._endpoint = endpoint
        self._where = redact_endpoint(endpoint)
        self._deadline = deadline

    def _remaining(self, method: str) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise PledgewatchError(f"ledger RPC {method} at {self._where}: timed out")
        return left

    def call(self, method: str, params: list[object]) -> object:
        request_id = next(_IDS)
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        request = urllib.request.Request(  # noqa: S310 (scheme checked: http or https only)
            self._endpoint,
            data=body.encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        raw = self._send(method, request)
        if not _shallow(raw):
            raise ValidationError(
                f"ledger RPC {method}: answer is not JSON nested at most {MAX_JSON_DEPTH} deep"
            )
        try:
            answer = json.loads(raw, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            raise ValidationError(f"ledger RPC {method}: answer is not JSON") from None
        return _result(method, request_id, answer)

    def _send(self, method: str, request: urllib.request.Request) -> bytes:
        where = f"ledger RPC {method} at {self._where}"
        try:
            with _OPENER.open(request, timeout=self._remaining(method)) as response:
                chunks: list[bytes] = []
                size = 0
                while chunk := response.read1(65536):
                    size += len(chunk)
                    if size > MAX_RESPONSE_BYTES:
                        raise ValidationError(f"{where}: answer over {MAX_RESPONSE_BYTES} bytes")
                    chunks.append(chunk)
                    self._remaining(method)
                return b"".join(chunks)
        except urllib.error.HTTPError as exc:
            raise PledgewatchError(f"{where}: HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise PledgewatchError(f"{where}: unreachable: {exc.reason}") from None
        except TimeoutError:
            raise PledgewatchError(f"{where}: timed out") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise PledgewatchError(f"{where}: {type(exc).__name__}: {exc}") from None


def _shallow(raw: bytes) -> bool:
    """True when the brackets outside strings in ``raw`` are balanced and nest at most
    ``MAX_JSON_DEPTH`` (up to twice that when ``[`` and ``{`` alternate) deep.

    Checked before ``json.loads``: its C decoder recurses once per level, and in a process
    whose recursion limit was raised (importing web3.py sets 100,000) a deep enough document
    overflows the C stack and kills the process instead of raising ``RecursionError``. Each
    pass strips the innermost pairs, so this costs at most ``2 * MAX_JSON_DEPTH`` linear
    scans of the bytes, all in C.
    """
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    for _ in range(MAX_JSON_DEPTH):
        if not brackets:
            return True
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if shorter == brackets:
            return False
        brackets = shorter
    return not brackets


def _refuse_constant(name: str) -> object:
    raise ValueError(f"JSON constant {name} is not allowed")


def _result(method: str, request_id: int, answer: object) -> object:
    if not isinstance(answer, dict) or answer.get("jsonrpc") != "2.0":
        raise ValidationError(f"ledger RPC {method}: want a JSON-RPC 2.0 response object")
    answer_id = answer.get("id")
    if not isinstance(answer_id, int) or isinstance(answer_id, bool) or answer_id != request_id:
        raise ValidationError(
            f"ledger RPC {method}: response id: got {_short(answer_id)}, want {request_id}"
        )
    if "error" in answer:
        error = answer["error"]
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        raise PledgewatchError(f"ledger RPC {method}: node error {code!r}: {_short(message)}")
    if "result" not in answer:
        raise ValidationError(f"ledger RPC {method}: response has neither result nor error")
    return answer["result"]
