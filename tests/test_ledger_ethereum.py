"""The Ethereum ledger against a real dev node (anvil), and the stdlib receipt checker.

Every receipt is checked twice: through web3.py (`EthereumLedger.check`) and through the
stdlib-only verifier (`pledgewatch.ethcheck.check_ethereum_receipt_stdlib`). The hostile-node
tests at the end use a small in-process HTTP server (pure parsing logic, no chain needed).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from eth_account import Account

from anchor.ledger import LedgerConfigError, LedgerError, open_ledger
from anchor.ledger.ethereum import EthereumLedger, parse_ethereum_url
from pledgewatch.anchoring import LedgerReceipt, anchor_payload
from pledgewatch.errors import PledgewatchError, ProofError, ValidationError
from pledgewatch.ethcheck import (
    OnChainBlock,
    OnChainTx,
    check_ethereum_receipt_stdlib,
    compare_ethereum_receipt,
    rpc_endpoint,
)

from servers import LOOPBACK, AnvilFactory, AnvilServer, free_port

ROOT = Path(__file__).resolve().parents[1]
Checker = Callable[[LedgerReceipt], None]


def payload(n: int) -> bytes:
    return anchor_payload("bank.example/log", n, bytes([n % 256]) * 32)


def dev_ledger(node: AnvilServer, **options: object) -> EthereumLedger:
    ledger = open_ledger(node.ledger_url(**{"from": node.rpc("eth_accounts")[0], **options}))
    assert isinstance(ledger, EthereumLedger)
    return ledger


@pytest.fixture
def ledger(anvil: AnvilServer) -> Iterator[EthereumLedger]:
    opened = dev_ledger(anvil)
    yield opened
    opened.close()


def checkers(anvil: AnvilServer, ledger: EthereumLedger) -> dict[str, Checker]:
    return {
        "web3": ledger.check,
        "stdlib": lambda r: check_ethereum_receipt_stdlib(anvil.ledger_url(), r, timeout_s=5),
        "stdlib-plain-url": lambda r: check_ethereum_receipt_stdlib(anvil.rpc_url, r),
    }


def test_anchor_then_check_each_receipt(anvil: AnvilServer, ledger: EthereumLedger) -> None:
    receipts = [ledger.anchor(payload(n)) for n in range(1, 4)]
    sender = anvil.rpc("eth_accounts")[0].lower()
    for receipt in receipts:
        assert receipt.backend == "ethereum"
        assert receipt.chain_id == 31337 and receipt.ledger_id == "eip155:31337"
        assert receipt.prev_hash is None
        assert receipt.tx_hash.startswith("0x") and len(receipt.tx_hash) == 66
        tx = anvil.rpc("eth_getTransactionByHash", [receipt.tx_hash])
        assert tx["from"].lower() == tx["to"].lower() == sender
        assert int(tx["value"], 16) == 0
        assert bytes.fromhex(tx["input"][2:]) == receipt.payload
        assert int(tx["blockNumber"], 16) == receipt.block_number
        block = anvil.rpc("eth_getBlockByNumber", [hex(receipt.block_number), False])
        assert int(block["timestamp"], 16) * 1000 == receipt.block_time_ms
        for check in checkers(anvil, ledger).values():
            check(receipt)
            check(LedgerReceipt.from_dict(json.loads(json.dumps(receipt.to_dict()))))
    assert [r.block_number for r in receipts] == sorted({r.block_number for r in receipts})


def test_key_file_signs_locally(anvil: AnvilServer, tmp_path: Path) -> None:
    account = Account.create()
    anvil.rpc("anvil_setBalance", [account.address, hex(10**18)])
    key_file = tmp_path / "anchor.key"
    key_file.write_text(account.key.hex() + "\n")
    key_file.chmod(0o600)
    url = anvil.ledger_url(key_file=key_file)
    ledger = open_ledger(url)
    receipts = [ledger.anchor(payload(n)) for n in range(2)]
    for receipt in receipts:
        ledger.check(receipt)
        check_ethereum_receipt_stdlib(url, receipt)
        tx = anvil.rpc("eth_getTransactionByHash", [receipt.tx_hash])
        assert tx["from"].lower() == tx["to"].lower() == account.address.lower()
    ledger.close()

    key_file.chmod(0o644)
    with pytest.raises(LedgerError, match="want 0600") as caught:
        open_ledger(url)
    assert account.key.hex().removeprefix("0x") not in str(caught.value)
    key_file.write_text("not a key")
    key_file.chmod(0o600)
    with pytest.raises(LedgerError, match="64 hex digits"):
        open_ledger(url)


@pytest.mark.parametrize("checker", ["web3", "stdlib"])
def test_wrong_receipt_fails_check(
    anvil: AnvilServer, ledger: EthereumLedger, checker: str
) -> None:
    first, second = ledger.anchor(payload(1)), ledger.anchor(payload(2))
    check = checkers(anvil, ledger)[checker]
    wrong: list[tuple[LedgerReceipt, str]] = [
        (dataclasses.replace(first, payload=payload(9)), "input data"),
        (dataclasses.replace(first, block_number=second.block_number), "block number"),
        (dataclasses.replace(first, block_number=first.block_number - 1), "block number"),
        (dataclasses.replace(first, block_number=10_000), "block number"),
        (dataclasses.replace(first, tx_hash=second.tx_hash), "block number"),
        (dataclasses.replace(first, tx_hash="0x" + "ab" * 32), "not found"),
        (dataclasses.replace(first, block_time_ms=first.block_time_ms + 1000), "block time"),
        (dataclasses.replace(first, block_time_ms=first.block_time_ms + 1), "block_time_ms"),
        (dataclasses.replace(first, chain_id=1, ledger_id="eip155:1"), "chain id"),
        (dataclasses.replace(first, ledger_id="eip155:1"), "ledger_id"),
        (dataclasses.replace(first, tx_hash="0x1234"), "tx_hash"),
        (dataclasses.replace(first, prev_hash="00" * 32), "prev_hash"),
        (dataclasses.replace(first, backend="sqlite"), "backend"),
    ]
    for receipt, message in wrong:
        with pytest.raises(ProofError, match=message):
            check(receipt)
    check(first)


def test_restarted_node_fails_check_cleanly(anvil: AnvilServer, ledger: EthereumLedger) -> None:
    """anvil keeps its chain in memory: after a restart the old transactions are gone, even
    when new ones fill the same block numbers."""
    receipts = [ledger.anchor(payload(n)) for n in range(1, 3)]
    anvil.restart(crash=True)
    for receipt in receipts:
        for name, check in checkers(anvil, ledger).items():
            with pytest.raises(ProofError, match="not found") as caught:
                check(receipt)
            assert caught.value.expected == receipt.tx_hash, name
    refill = [ledger.anchor(payload(n)) for n in range(5, 9)]
    assert {r.block_number for r in receipts} <= {r.block_number for r in refill}
    for receipt in receipts:
        for check in checkers(anvil, ledger).values():
            with pytest.raises(ProofError, match="not found"):
                check(receipt)


def test_stopped_node_is_a_ledger_error_not_a_proof_error(
    anvil: AnvilServer, ledger: EthereumLedger
) -> None:
    receipt = ledger.anchor(payload(1))
    anvil.stop()
    started = time.monotonic()
    with pytest.raises(LedgerError, match="ConnectionError"):
        ledger.anchor(payload(2))
    with pytest.raises(LedgerError, match="ConnectionError"):
        ledger.check(receipt)
    with pytest.raises(PledgewatchError, match="unreachable") as caught:
        check_ethereum_receipt_stdlib(anvil.rpc_url, receipt)
    assert not isinstance(caught.value, ProofError)
    assert time.monotonic() - started < 2


def test_unreachable_node_fails_fast_with_a_clear_message() -> None:
    port = free_port()  # nothing listens here
    url = f"ethereum+http://{LOOPBACK}:{port}/v3/SECRETKEY?from=0x{'11' * 20}&timeout_s=30"
    started = time.monotonic()
    with pytest.raises(LedgerError, match=f"connect via http://127.0.0.1:{port}/… failed") as e:
        open_ledger(url)
    assert time.monotonic() - started < 2
    assert "SECRETKEY" not in str(e.value)  # provider API keys live in the path
    receipt = LedgerReceipt("ethereum", "eip155:1", 1, "0x" + "ab" * 32, 1, 1000, None, b"p")
    with pytest.raises(PledgewatchError, match="unreachable") as caught:
        check_ethereum_receipt_stdlib(url, receipt)
    assert "SECRETKEY" not in str(caught.value)
    assert time.monotonic() - started < 2


def test_silent_node_times_out() -> None:
    """A node that accepts the connection and never answers: each request's timeout holds."""
    with socket.socket() as silent:
        silent.bind((LOOPBACK, 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = f"ethereum+http://{LOOPBACK}:{port}?from=0x{'11' * 20}&timeout_s=0.5"
        started = time.monotonic()
        with pytest.raises(LedgerError, match="Timeout"):
            open_ledger(url)
        assert time.monotonic() - started < 2
        receipt = LedgerReceipt("ethereum", "eip155:1", 1, "0x" + "ab" * 32, 1, 1000, None, b"p")
        started = time.monotonic()
        with pytest.raises(PledgewatchError, match="timed out"):
            check_ethereum_receipt_stdlib(url, receipt, timeout_s=0.5)
        assert time.monotonic() - started < 2


def test_waits_for_confirmations(anvil_factory: AnvilFactory) -> None:
    node = anvil_factory(block_time=0.5)
    ledger = dev_ledger(node, confirmations=2, timeout_s=10)
    receipt = ledger.anchor(payload(1))
    assert int(node.rpc("eth_blockNumber"), 16) >= receipt.block_number + 1
    ledger.check(receipt)
    check_ethereum_receipt_stdlib(node.rpc_url, receipt)
    ledger.close()


def test_confirmation_timeout_is_a_ledger_error(anvil: AnvilServer) -> None:
    ledger = dev_ledger(anvil, confirmations=3, timeout_s=0.5)  # automine: no later blocks
    started = time.monotonic()
    with pytest.raises(LedgerError, match=r"transaction 0x[0-9a-f]{64} not confirmed in time"):
        ledger.anchor(payload(1))
    assert time.monotonic() - started < 2
    ledger.close()


def test_locked_account_is_refused_at_open(anvil: AnvilServer) -> None:
    with pytest.raises(LedgerError, match="not unlocked"):
        open_ledger(anvil.ledger_url(**{"from": "0x" + "22" * 20}))


def test_urls() -> None:
    config = parse_ethereum_url(
        "ethereum+https://node.example:8545/rpc/v1?from=0x" + "ab" * 20 + "&confirmations=3"
    )
    assert config.rpc_url == "https://node.example:8545/rpc/v1"
    assert config.from_address is not None and config.from_address.lower() == "0x" + "ab" * 20
    assert (config.confirmations, config.timeout_s, config.key_file) == (3, 120.0, None)
    assert parse_ethereum_url("ethereum+http://h?key_file=/k&timeout_s=5").key_file == Path("/k")
    with pytest.raises(LedgerConfigError) as caught:
        parse_ethereum_url("ethereum+ftp://?from=0x12&confirmations=0&timeout_s=nan&x=1")
    message = str(caught.value)
    for problem in ("ethereum+ftp", "option from", "confirmations", "timeout_s", "'x': unknown"):
        assert problem in message, problem
    with pytest.raises(LedgerConfigError, match="exactly one of"):
        parse_ethereum_url("ethereum+http://h")
    with pytest.raises(LedgerConfigError, match="exactly one of"):
        parse_ethereum_url("ethereum+http://h?from=0x" + "ab" * 20 + "&key_file=/k")
    assert rpc_endpoint("http://h:1/x?apikey=1") == "http://h:1/x?apikey=1"
    for bad in ("file:///etc/passwd", "ethereum+file:///x", "http://", "http://h:99999"):
        with pytest.raises(PledgewatchError):
            rpc_endpoint(bad)


# --- pure comparison rule -------------------------------------------------------------------

RECEIPT = LedgerReceipt("ethereum", "eip155:5", 5, "0x" + "aa" * 32, 7, 12_000, None, b"pay")
TX = OnChainTx("0x" + "aa" * 32, 7, "0x" + "bb" * 32, b"pay", 5)
BLOCK = OnChainBlock(7, "0x" + "bb" * 32, 12, ("0x" + "cc" * 32, "0x" + "aa" * 32))


def test_compare_accepts_the_matching_view() -> None:
    compare_ethereum_receipt(RECEIPT, chain_id=5, tx=TX, block=BLOCK)
    compare_ethereum_receipt(
        RECEIPT, chain_id=5, tx=dataclasses.replace(TX, chain_id=None), block=BLOCK
    )


@pytest.mark.parametrize(
    ("tx", "block", "message"),
    [
        (dataclasses.replace(TX, block_hash="0x" + "dd" * 32), BLOCK, "canonical block hash"),
        (TX, dataclasses.replace(BLOCK, transactions=()), "does not list"),
        (dataclasses.replace(TX, block_number=None, block_hash=None), BLOCK, "pending"),
        (dataclasses.replace(TX, chain_id=6), BLOCK, "transaction chain id"),
        (dataclasses.replace(TX, tx_hash="0x" + "ee" * 32), BLOCK, "transaction hash"),
        (TX, dataclasses.replace(BLOCK, number=8), "block number"),
        (TX, None, "block 7 not found"),
        (None, BLOCK, "transaction not found"),
    ],
)
def test_compare_rejects_a_disagreeing_view(
    tx: OnChainTx | None, block: OnChainBlock | None, message: str
) -> None:
    with pytest.raises(ProofError, match=message):
        compare_ethereum_receipt(RECEIPT, chain_id=5, tx=tx, block=block)


# --- the stdlib checker against a hostile node ----------------------------------------------

GOOD_TX = {
    "hash": TX.tx_hash,
    "blockNumber": "0x7",
    "blockHash": TX.block_hash,
    "input": "0x" + b"pay".hex(),
    "chainId": "0x5",
}
GOOD_BLOCK = {
    "number": "0x7",
    "hash": BLOCK.block_hash,
    "timestamp": "0xc",
    "transactions": list(BLOCK.transactions),
}
Answer = Callable[[str, object], tuple[int, dict[str, str], bytes]]


def rpc_answer(results: dict[str, object]) -> Answer:
    def answer(method: str, request_id: object) -> tuple[int, dict[str, str], bytes]:
        body = {"jsonrpc": "2.0", "id": request_id, "result": results[method]}
        return 200, {}, json.dumps(body).encode()

    return answer


def good(**override: object) -> Answer:
    return rpc_answer({"eth_chainId": "0x5", "eth_getTransactionByHash": GOOD_TX,
                       "eth_getBlockByNumber": GOOD_BLOCK, **override})  # fmt: skip


def raw_answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> Answer:
    return lambda method, request_id: (status, headers or {}, body)


@pytest.fixture
def fake_node() -> Iterator[Callable[[Answer], str]]:
    """An HTTP server on loopback whose answer to each JSON-RPC request is set by the test."""
    state: dict[str, Answer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, headers, body = state["answer"](request["method"], request["id"])
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()

    def serve(answer: Answer) -> str:
        state["answer"] = answer
        return f"http://{LOOPBACK}:{server.server_address[1]}/"

    yield serve
    server.shutdown()
    server.server_close()


def test_stdlib_checker_accepts_a_well_formed_matching_node(
    fake_node: Callable[[Answer], str],
) -> None:
    check_ethereum_receipt_stdlib(fake_node(good()), RECEIPT)


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (raw_answer(200, b"<html>"), ValidationError, "not JSON"),
        (raw_answer(200, b"[" * 100_000 + b"]" * 100_000), ValidationError, "not JSON"),
        (raw_answer(200, b'{"jsonrpc":"2.0","id":1,"result":NaN}'), ValidationError, "JSON"),
        (raw_answer(200, b'{"jsonrpc":"2.0","id":1,"result":' + b"1" * 5000 + b"}"),
         ValidationError, "not JSON"),
        (raw_answer(200, b"[]"), ValidationError, "JSON-RPC 2.0"),
        (raw_answer(200, b'{"jsonrpc":"2.0","id":true,"result":"0x5"}'), ValidationError,
         "response id"),
        (raw_answer(200, b"x" * (4 * 1024 * 1024 + 10)), ValidationError, "answer over"),
        (raw_answer(500, b"oops"), PledgewatchError, "HTTP 500"),
        (raw_answer(302, b"", {"Location": "file:///etc/passwd"}), PledgewatchError, "HTTP 302"),
        (lambda m, i: (200, {}, json.dumps({"jsonrpc": "2.0", "id": i,
                                            "error": {"code": -32000, "message": "x" * 999}}
                                           ).encode()),
         PledgewatchError, "node error -32000"),
        (good(eth_chainId="0xzz"), ValidationError, "eth_chainId"),
        (good(eth_chainId=5), ValidationError, "eth_chainId"),
        (good(eth_getTransactionByHash={**GOOD_TX, "input": "0x123"}), ValidationError,
         "input"),
        (good(eth_getTransactionByHash={**GOOD_TX, "hash": "0xab"}), ValidationError, "hash"),
        (good(eth_getTransactionByHash=[1]), ValidationError, "want an object"),
        (good(eth_getBlockByNumber={**GOOD_BLOCK, "transactions": [{"hash": "0x"}]}),
         ValidationError, "block transaction"),
        (good(eth_getBlockByNumber={**GOOD_BLOCK, "timestamp": "0x00c"}), ValidationError,
         "timestamp"),
        (good(eth_getTransactionByHash=None), ProofError, "not found"),
        (good(eth_getBlockByNumber=None), ProofError, "block 7 not found"),
        (good(eth_chainId="0x6"), ProofError, "chain id"),
        (good(eth_getBlockByNumber={**GOOD_BLOCK, "hash": "0x" + "dd" * 32}), ProofError,
         "canonical block hash"),
    ],
)  # fmt: skip
def test_stdlib_checker_treats_the_node_as_untrusted(
    fake_node: Callable[[Answer], str], answer: Answer, error: type[Exception], message: str
) -> None:
    with pytest.raises(PledgewatchError, match=message) as caught:
        check_ethereum_receipt_stdlib(fake_node(answer), RECEIPT, timeout_s=5)
    assert type(caught.value) is error


def test_payload_limits(ledger: EthereumLedger) -> None:
    with pytest.raises(LedgerError, match="payload"):
        ledger.anchor(b"")
    with pytest.raises(LedgerError, match="payload"):
        ledger.anchor(os.urandom(4097))
    ledger.check(ledger.anchor(os.urandom(4096)))


def test_py_ecc_recursion_limit_no_longer_lets_nested_json_segfault() -> None:
    """Regression: importing web3.py (eth_account -> py_ecc) set the recursion limit to
    100,000, and json.loads of 100,000 nested brackets then crashed the process (SIGSEGV)."""
    probe = (
        "import json, sys\n"
        "import anchor.ledger.ethereum\n"
        "assert sys.getrecursionlimit() <= 1000, sys.getrecursionlimit()\n"
        "try:\n"
        "    json.loads('[' * 100_000)\n"
        "except RecursionError:\n"
        "    print('RecursionError')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout.strip()) == (0, "RecursionError"), result.stderr
