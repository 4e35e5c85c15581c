"""Ethereum as a ledger: the anchor payload is the calldata of a zero-value self-transaction.

URL: ``ethereum+http://127.0.0.1:8545?from=0x…`` or ``ethereum+https://host/path?key_file=…``
(the JSON-RPC endpoint is the URL without ``ethereum+`` and without the query). Options:

- ``from=0x…`` — an account the node holds unlocked (dev nodes such as anvil); the node signs.
- ``key_file=/path`` — a file holding a hex private key (64 hex digits, optional ``0x``), mode
  0600 or stricter; transactions are signed locally with eth-account (real networks).
  Exactly one of ``from`` and ``key_file``.
- ``confirmations=N`` (default 1): ``anchor()`` returns once the transaction's block has
  N - 1 blocks on top of it (1 = included).
- ``timeout_s=S`` (default 120): how long ``anchor()`` waits in total; single RPC requests
  time out after min(S, 10) s and are not retried.

``anchor(payload)`` sends ``{from: A, to: A, value: 0, data: payload}``, waits for the receipt
(status 1) and the confirmations, then re-reads the block at that height and requires its hash
to be the receipt's block hash (a reorg while waiting sends it back to waiting). The
``LedgerReceipt`` has ``ledger_id = "eip155:<chain id>"``, the ``0x`` transaction hash, the
block number and the block timestamp × 1000.

``check(receipt)`` reads the chain id, the transaction and the block at the receipt's height
through web3.py and applies ``pledgewatch.ethcheck.compare_ethereum_receipt`` — the same rule
the stdlib verifier (``check_ethereum_receipt_stdlib``) applies.
"""

from __future__ import annotations

import math
import stat
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress, HexStr
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import BlockNotFound, TimeExhausted, TransactionNotFound, Web3Exception
from web3.types import BlockData, TxData, TxParams, TxReceipt, Wei

from anchor.ledger.errors import LedgerConfigError, LedgerError
from pledgewatch.anchoring import LedgerReceipt
from pledgewatch.errors import PledgewatchError
from pledgewatch.ethcheck import (
    OnChainBlock,
    OnChainTx,
    compare_ethereum_receipt,
    redact_endpoint,
    rpc_endpoint,
    validate_ethereum_receipt,
)

# Importing eth_account (through web3) imports py_ecc, which raises the interpreter's
# recursion limit to 100,000 for the whole process. With that limit a deeply nested JSON
# document (json.loads("[" * 100_000)) overflows the C stack and kills the process with
# SIGSEGV instead of raising RecursionError, and the anchor decodes untrusted JSON in this
# process. Nothing we call needs more than the default (secp256k1 signing recurses ~256 deep),
# so the default is put back.
_DEFAULT_RECURSION_LIMIT = 1000
if sys.getrecursionlimit() > _DEFAULT_RECURSION_LIMIT:
    sys.setrecursionlimit(_DEFAULT_RECURSION_LIMIT)

BACKEND = "ethereum"
MAX_PAYLOAD_BYTES = 4096
DEFAULT_TIMEOUT_S = 120.0
MAX_RPC_TIMEOUT_S = 10.0
RECEIPT_POLL_S = 0.1
MAX_BLOCK_POLL_S = 2.0
_T = TypeVar("_T")
_OPTIONS = ("from", "key_file", "confirmations", "timeout_s")
# Errors web3.py and its transport raise for node trouble: requests' exceptions are OSErrors,
# JSON and formatter problems are ValueErrors.
_NODE_ERRORS = (Web3Exception, OSError, ValueError)


@dataclass(frozen=True, slots=True)
class EthereumLedgerConfig:
    rpc_url: str
    from_address: ChecksumAddress | None
    key_file: Path | None
    confirmations: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def rpc_timeout_s(self) -> float:
        return min(self.timeout_s, MAX_RPC_TIMEOUT_S)


def parse_ethereum_url(url: str) -> EthereumLedgerConfig:
    """Parse an ``ethereum+http(s)://`` ledger URL (no I/O); every problem in one error."""
    problems: list[str] = []
    parts = urlsplit(url)
    if not parts.scheme.lower().startswith("ethereum+"):
        problems.append(f"scheme: got {parts.scheme!r}, want ethereum+http or ethereum+https")
    rpc_url = ""
    try:
        rpc_url = rpc_endpoint(url)
    except PledgewatchError as exc:
        problems.append(str(exc))
    if parts.fragment:
        problems.append("fragment: want none")
    options = _options(parts.query, problems)
    from_address = _address(options.get("from"), problems)
    key_file = Path(options["key_file"]) if options.get("key_file") else None
    if (from_address is None) == (key_file is None):
        problems.append("want exactly one of from=0x… (unlocked account) and key_file=/path")
    confirmations = _int_option(options.get("confirmations"), "confirmations", 1, problems)
    timeout_s = _seconds_option(options.get("timeout_s"), problems)
    if problems:
        # The URL itself is left out: provider API keys live in its path.
        raise LedgerConfigError("ethereum ledger URL: " + "; ".join(problems))
    return EthereumLedgerConfig(rpc_url, from_address, key_file, confirmations, timeout_s)


def _options(query: str, problems: list[str]) -> dict[str, str]:
    try:
        raw = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        problems.append(f"query: cannot parse {query!r}")
        return {}
    options: dict[str, str] = {}
    for key, values in raw.items():
        if key not in _OPTIONS:
            problems.append(f"option {key!r}: unknown, want one of {', '.join(_OPTIONS)}")
        elif len(values) != 1:
            problems.append(f"option {key}: given more than once")
        else:
            options[key] = values[0]
    return options


def _address(text: str | None, problems: list[str]) -> ChecksumAddress | None:
    if text is None:
        return None
    if not Web3.is_address(text):
        problems.append(f"option from: got {text!r}, want a 0x address (checksummed if mixed)")
        return None
    return Web3.to_checksum_address(text)


def _int_option(text: str | None, name: str, default: int, problems: list[str]) -> int:
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        problems.append(f"option {name}: got {text!r}, want an integer 1..10000")
        return default
    return int(text)


def _seconds_option(text: str | None, problems: list[str]) -> float:
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        problems.append(f"option timeout_s: got {text!r}, want a number of seconds > 0")
        return DEFAULT_TIMEOUT_S
    return value


def load_key_file(path: Path) -> LocalAccount:
    """Read a hex private key from a file only its owner can read; the key never appears in
    an error message."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise LedgerError(f"key_file {path}: cannot read: {type(exc).__name__}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise LedgerError(f"key_file {path}: mode {stat.S_IMODE(mode):04o}, want 0600 (owner only)")
    hex_key = text.removeprefix("0x")
    if len(hex_key) != 64 or any(c not in "0123456789abcdefABCDEF" for c in hex_key):
        raise LedgerError(f"key_file {path}: want 64 hex digits (optionally 0x-prefixed)")
    try:
        account: LocalAccount = Account.from_key(bytes.fromhex(hex_key))
    except ValueError:
        raise LedgerError(f"key_file {path}: not a valid secp256k1 private key") from None
    return account


class EthereumLedger:
    """Anchors payloads as calldata of zero-value self-transactions (see module docstring)."""

    def __init__(self, config: EthereumLedgerConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._session: requests.Session | None = None
        self._w3: Web3 | None = None
        self._account: LocalAccount | None = None
        self._address: ChecksumAddress | None = config.from_address
        self._chain_id: int | None = None

    @classmethod
    def from_url(cls, url: str) -> EthereumLedger:
        return cls(parse_ethereum_url(url))

    @property
    def config(self) -> EthereumLedgerConfig:
        return self._config

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            raise LedgerError("ethereum ledger is not open")
        return self._chain_id

    @property
    def ledger_id(self) -> str:
        return f"eip155:{self.chain_id}"

    @property
    def address(self) -> ChecksumAddress:
        if self._address is None:
            raise LedgerError("ethereum ledger is not open")
        return self._address

    def open(self) -> None:
        """Load the key (if any), connect, read the chain id, check the sending account."""
        with self._lock:
            if self._w3 is not None:
                return
            if self._config.key_file is not None:
                self._account = load_key_file(self._config.key_file)
                self._address = self._account.address
            session = requests.Session()
            w3 = Web3(
                Web3.HTTPProvider(
                    self._config.rpc_url,
                    request_kwargs={"timeout": self._config.rpc_timeout_s},
                    session=session,
                    exception_retry_configuration=None,
                )
            )
            try:
                self._chain_id = self._node("connect", lambda: self._handshake(w3))
            except BaseException:
                session.close()
                raise
            self._session, self._w3 = session, w3

    def _handshake(self, w3: Web3) -> int:
        chain_id = w3.eth.chain_id
        if self._account is None and self.address not in w3.eth.accounts:
            raise LedgerError(
                f"ethereum ledger: account {self.address} is not unlocked on the node at "
                f"{redact_endpoint(self._config.rpc_url)} (use key_file= for a real network)"
            )
        return chain_id

    def _node(self, what: str, call: Callable[[], _T]) -> _T:
        try:
            return call()
        except LedgerError:
            raise
        except TimeExhausted as exc:
            raise LedgerError(f"ethereum ledger: {what}: {exc}") from None
        except _NODE_ERRORS as exc:
            raise LedgerError(
                f"ethereum ledger: {what} via {redact_endpoint(self._config.rpc_url)} failed: "
                f"{type(exc).__name__}: {self._scrub(str(exc))}"
            ) from None

    def _scrub(self, text: str) -> str:
        """``text`` without the endpoint's path, query and password (requests quotes the URL
        it failed on, and provider API keys live there)."""
        parts = urlsplit(self._config.rpc_url)
        secrets = [self._config.rpc_url, parts.password or ""]
        if parts.path.strip("/") or parts.query:
            secrets += [parts.path + (f"?{parts.query}" if parts.query else ""), parts.path]
        for secret in sorted(filter(None, secrets), key=len, reverse=True):
            if secret.strip("/"):
                text = text.replace(secret, "…")
        return text

    def _web3(self) -> Web3:
        if self._w3 is None:
            raise LedgerError("ethereum ledger is not open; call open() or use open_ledger()")
        return self._w3

    def anchor(self, payload: bytes) -> LedgerReceipt:
        """Send the payload, wait for inclusion and confirmations, return the receipt."""
        if not isinstance(payload, bytes) or not 0 < len(payload) <= MAX_PAYLOAD_BYTES:
            raise LedgerError(f"payload: want 1..{MAX_PAYLOAD_BYTES} bytes")
        with self._lock:
            w3 = self._web3()
            deadline = time.monotonic() + self._config.timeout_s
            tx_hash = self._node("send transaction", lambda: self._send(w3, payload))
            receipt, block = self._node(
                f"wait for transaction {tx_hash.to_0x_hex()}",
                lambda: self._wait_included(w3, tx_hash, deadline),
            )
            chain_id = self._node("read chain id", lambda: w3.eth.chain_id)
            if chain_id != self.chain_id:
                raise LedgerError(
                    f"ethereum ledger: chain id changed from {self.chain_id} to {chain_id} "
                    "since the ledger was opened"
                )
        return LedgerReceipt(
            backend=BACKEND,
            ledger_id=self.ledger_id,
            chain_id=self.chain_id,
            tx_hash=tx_hash.to_0x_hex(),
            block_number=receipt["blockNumber"],
            block_time_ms=block["timestamp"] * 1000,
            prev_hash=None,
            payload=payload,
        )

    def _send(self, w3: Web3, payload: bytes) -> HexBytes:
        tx: TxParams = {
            "from": self.address,
            "to": self.address,
            "value": Wei(0),
            "data": HexBytes(payload),
        }
        if self._account is None:
            return w3.eth.send_transaction(tx)
        base_fee = w3.eth.get_block("latest").get("baseFeePerGas")
        if base_fee is None:
            raise LedgerError("ethereum ledger: node reports no base fee (pre-London chain)")
        priority = w3.eth.max_priority_fee
        unsigned: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": w3.eth.get_transaction_count(self.address, "pending"),
            "to": self.address,
            "value": 0,
            "data": payload,
            "gas": w3.eth.estimate_gas(tx),
            "maxPriorityFeePerGas": priority,
            "maxFeePerGas": 2 * base_fee + priority,
        }
        signed = self._account.sign_transaction(unsigned)
        return w3.eth.send_raw_transaction(signed.raw_transaction)

    def _wait_included(
        self, w3: Web3, tx_hash: HexBytes, deadline: float
    ) -> tuple[TxReceipt, BlockData]:
        """Wait for a successful receipt, then for ``confirmations``; return the receipt and
        its block once the block at that height is still the receipt's block."""
        while True:
            receipt = w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=_left(deadline, tx_hash), poll_latency=RECEIPT_POLL_S
            )
            if receipt["status"] != 1:
                raise LedgerError(
                    f"ethereum ledger: transaction {tx_hash.to_0x_hex()} failed (status "
                    f"{receipt['status']}) in block {receipt['blockNumber']}"
                )
            height = receipt["blockNumber"] + self._config.confirmations - 1
            _wait_for_height(w3, height, deadline, tx_hash)
            try:
                block = w3.eth.get_block(receipt["blockNumber"])
            except BlockNotFound:
                continue
            if block.get("hash") == receipt["blockHash"]:
                return receipt, block

    def check(self, receipt: LedgerReceipt) -> None:
        """Re-read the transaction and its block through web3.py; ``ProofError`` when the
        chain disagrees with ``receipt``, ``LedgerError`` when the node cannot be read."""
        validate_ethereum_receipt(receipt)
        with self._lock:
            w3 = self._web3()
            chain_id, tx, block = self._node(
                f"read transaction {receipt.tx_hash}", lambda: _read_onchain(w3, receipt)
            )
        compare_ethereum_receipt(receipt, chain_id=chain_id, tx=tx, block=block)

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
            self._session = None
            self._w3 = None

    def __enter__(self) -> EthereumLedger:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _left(deadline: float, tx_hash: HexBytes) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise LedgerError(
            f"ethereum ledger: transaction {tx_hash.to_0x_hex()} not confirmed in time; it "
            "may still be mined later"
        )
    return left


def _wait_for_height(w3: Web3, height: int, deadline: float, tx_hash: HexBytes) -> None:
    pause = 0.05
    while w3.eth.block_number < height:
        time.sleep(min(pause, _left(deadline, tx_hash)))
        pause = min(pause * 2, MAX_BLOCK_POLL_S)


def _read_onchain(
    w3: Web3, receipt: LedgerReceipt
) -> tuple[int, OnChainTx | None, OnChainBlock | None]:
    chain_id = w3.eth.chain_id
    try:
        tx: OnChainTx | None = _onchain_tx(w3.eth.get_transaction(HexStr(receipt.tx_hash)))
    except TransactionNotFound:
        tx = None
    try:
        block: OnChainBlock | None = _onchain_block(w3.eth.get_block(receipt.block_number))
    except BlockNotFound:
        block = None
    return chain_id, tx, block


def _onchain_tx(tx: TxData) -> OnChainTx:
    block_hash = tx.get("blockHash")
    return OnChainTx(
        tx_hash=HexBytes(tx["hash"]).to_0x_hex(),
        block_number=tx.get("blockNumber"),
        block_hash=None if block_hash is None else HexBytes(block_hash).to_0x_hex(),
        input=bytes(tx.get("input", b"")),
        chain_id=tx.get("chainId"),
    )


def _onchain_block(block: BlockData) -> OnChainBlock:
    hashes = tuple(
        HexBytes(item if isinstance(item, bytes) else item["hash"]).to_0x_hex()
        for item in block.get("transactions", ())
    )
    return OnChainBlock(
        number=block["number"],
        block_hash=HexBytes(block["hash"]).to_0x_hex(),
        timestamp=block["timestamp"],
        transactions=hashes,
    )
