"""The wire stream: gapless signed chains, and each delivery fault exactly as its ground truth
says — the anchor's tests rely on these records."""

from __future__ import annotations

import collections
import dataclasses
import itertools
from functools import cache

import pytest

from devices.sim import (
    FaultKind,
    FaultRecord,
    Scenario,
    SimMessage,
    WireStream,
    find_scenario,
    load_scenario,
)
from devices.sim.seeding import derive_key
from pledgewatch.errors import SignatureError
from pledgewatch.events import ZERO_HASH, SignedEvent
from pledgewatch.signing import SigningKey, verify_event
from pledgewatch.topics import events_topic


@dataclasses.dataclass(frozen=True)
class Run:
    scenario: Scenario
    stream: WireStream
    messages: tuple[SimMessage, ...]
    truth: dict[FaultKind, FaultRecord]

    def decoded(self, position: int) -> SignedEvent:
        return SignedEvent.from_wire(self.messages[position].payload)


@cache
def stream_of(name: str) -> Run:
    scenario = load_scenario(find_scenario(name))
    stream = WireStream(scenario)
    messages = tuple(stream)
    return Run(scenario, stream, messages, {r.kind: r for r in stream.ground_truth()})


def verifies(stream: WireStream, message: SimMessage) -> bool:
    try:
        verify_event(SignedEvent.from_wire(message.payload), stream.public_keys()[message.gateway])
    except SignatureError:
        return False
    return True


def chains(run: Run) -> dict[tuple[str, str], list[SignedEvent]]:
    """Per (gateway, device), the first copy of each seq, ordered by seq."""
    out: dict[tuple[str, str], dict[int, SignedEvent]] = collections.defaultdict(dict)
    for m in run.messages:
        signed = SignedEvent.from_wire(m.payload)
        out[(m.gateway, signed.event.device)].setdefault(signed.event.seq, signed)
    return {k: [v[s] for s in sorted(v)] for k, v in out.items()}


def test_clean_stream_chains_are_gapless_linked_and_signed() -> None:
    run = stream_of("small")
    assert run.truth == {}
    assert all(m.fault is None for m in run.messages)
    assert all(verifies(run.stream, m) for m in run.messages)
    assert {m.topic for m in run.messages} == {events_topic("wh-small", "gw-1")}
    assert [m.at_ms for m in run.messages] == sorted(m.at_ms for m in run.messages)
    assert len({m.payload for m in run.messages}) == len(run.messages)
    for chain in chains(run).values():
        assert [e.event.seq for e in chain] == list(range(1, len(chain) + 1))
        prev = ZERO_HASH
        for signed in chain:
            assert signed.event.prev == prev
            prev = signed.event_id


def test_same_seed_same_bytes_different_seed_different_keys() -> None:
    scenario = load_scenario(find_scenario("small"))
    first = [m.payload for m in WireStream(scenario)]
    assert first == [m.payload for m in WireStream(scenario)]
    other = WireStream(dataclasses.replace(scenario, seed=scenario.seed + 1))
    assert other.public_keys() != WireStream(scenario).public_keys()


def test_keys_can_be_passed_in() -> None:
    scenario = load_scenario(find_scenario("small"))
    key = SigningKey(bytes(range(32)))
    stream = WireStream(scenario, keys={"gw-1": key})
    message = next(iter(stream))
    assert SignedEvent.from_wire(message.payload).key_id == key.key_id
    with pytest.raises(Exception, match="no signing key"):
        WireStream(scenario, keys={})


def test_ground_truth_needs_the_whole_stream() -> None:
    stream = WireStream(load_scenario(find_scenario("small")))
    next(iter(stream))
    with pytest.raises(RuntimeError):
        stream.ground_truth()


def test_faulty_stream_chains_stay_intact_and_only_forgeries_fail() -> None:
    run = stream_of("faults")
    assert set(run.truth) == set(FaultKind)
    forged = {
        run.truth[FaultKind.WRONG_KEY].messages[0],
        run.truth[FaultKind.TAMPERED_PAYLOAD].messages[0],
    }
    for position, message in enumerate(run.messages):
        assert verifies(run.stream, message) == (position not in forged), position
    assert [m.at_ms for m in run.messages] == sorted(m.at_ms for m in run.messages)
    tampered = run.truth[FaultKind.TAMPERED_PAYLOAD].event_ids[0]
    for chain in chains(run).values():
        assert [e.event.seq for e in chain] == list(range(1, len(chain) + 1))
        for before, after in itertools.pairwise(chain):
            assert after.event.prev in (before.event_id, tampered)


def test_every_marked_message_is_in_a_record_and_back() -> None:
    run = stream_of("faults")
    marked = {i for i, m in enumerate(run.messages) if m.fault is not None}
    recorded = {p for r in run.truth.values() for p in r.messages}
    assert marked == recorded
    for record in run.truth.values():
        for p in record.messages:
            assert run.messages[p].gateway == record.gateway


def test_theft_tamper_alarm_and_reading_faults_point_at_their_events() -> None:
    run = stream_of("faults")
    theft = run.truth[FaultKind.THEFT]
    [position] = theft.messages
    event = run.decoded(position).event
    assert event.event_id() == theft.event_ids[0] and event.kind.value == "UNLOAD"
    assert event.release is None and event.lot == "wr-a-0001"
    alarm = run.truth[FaultKind.TAMPER_ALARM]
    assert run.decoded(alarm.messages[0]).event.kind.value == "TAMPER"
    skew = run.truth[FaultKind.CLOCK_SKEW]
    assert len(skew.event_ids) == len(skew.messages) > 0
    assert run.truth[FaultKind.DROPOUT].event_ids == ()


def test_duplicate_and_replay_resend_identical_bytes() -> None:
    run = stream_of("faults")
    for kind, delay in ((FaultKind.DUPLICATE, 3_000), (FaultKind.REPLAY, 86_400_000)):
        record = run.truth[kind]
        [copy] = record.messages
        payload = run.messages[copy].payload
        [original] = [i for i, m in enumerate(run.messages) if m.payload == payload and i != copy]
        assert original < copy
        assert run.messages[copy].at_ms - run.messages[original].at_ms == delay
        assert run.decoded(copy).event_id == record.event_ids[0]
        assert run.messages[original].fault is None and run.messages[copy].fault is kind


def test_reorder_delivers_after_the_next_event_of_the_device() -> None:
    run = stream_of("faults")
    record = run.truth[FaultKind.REORDER]
    late_id, next_id = record.event_ids
    [late] = record.messages
    ids = [SignedEvent.from_wire(m.payload).event_id for m in run.messages]
    assert ids.index(next_id) == late - 1
    late_event, next_event = run.decoded(late).event, run.decoded(late - 1).event
    assert late_event.event_id() == late_id and next_event.prev == late_id
    assert next_event.seq == late_event.seq + 1


def test_wrong_key_is_signed_by_the_impostor() -> None:
    run = stream_of("faults")
    record = run.truth[FaultKind.WRONG_KEY]
    signed = run.decoded(record.messages[0])
    impostor = derive_key(run.scenario.seed, f"wrong/{record.gateway}")
    assert signed.key_id == impostor.key_id and signed.event_id == record.event_ids[0]
    verify_event(signed, impostor.public_key)  # a real signature, just not the gateway's
    with pytest.raises(SignatureError):
        verify_event(signed, run.stream.public_keys()[record.gateway])


def test_tampered_payload_keeps_the_chain_but_breaks_the_signature() -> None:
    run = stream_of("faults")
    record = run.truth[FaultKind.TAMPERED_PAYLOAD]
    signed = run.decoded(record.messages[0])
    assert signed.event_id != record.event_ids[0]
    assert signed.event_id in record.detail and "grams" in record.detail
    chain = chains(run)[(record.gateway, signed.event.device)]
    follower = chain[signed.event.seq]  # the event after it (seq is 1-based)
    assert follower.event.prev == record.event_ids[0]


def test_gateway_offline_delivers_late_in_order() -> None:
    run = stream_of("faults")
    record = run.truth[FaultKind.GATEWAY_OFFLINE]
    delayed = [run.messages[p] for p in record.messages]
    assert delayed and all(
        m.at_ms == record.end_ms and m.gateway == record.gateway for m in delayed
    )
    events = [SignedEvent.from_wire(m.payload).event for m in delayed]
    assert all(record.start_ms <= e.ts_ms < record.end_ms for e in events)
    assert [e.event_id() for e in events] == list(record.event_ids)
    assert [e.ts_ms for e in events] == sorted(e.ts_ms for e in events)
    window = [
        m
        for m in run.messages
        if m.gateway == record.gateway
        and record.start_ms <= SignedEvent.from_wire(m.payload).event.ts_ms < record.end_ms
    ]
    assert window == delayed
