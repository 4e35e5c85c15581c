"""Property-based run of the read API's OpenAPI document (schemathesis) against the live
server over a real store: for every operation, generated requests with an officer's token
must get no 5xx, and every answer must conform to the document (status code documented,
content type, headers, body schema). schemathesis' own checks also re-send requests without
the token (``ignored_auth``) and with schema-violating data (``negative_data_rejection``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

import anchor.api as api_module

from api_rig import Api, build_store, serve


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    folder: Path = tmp_path_factory.mktemp("api-schema")
    store = build_store(f"sqlite:///{folder / 'anchor.db'}", folder)
    try:
        with serve(store) as running:
            yield running
    finally:
        store.db.close()


# Loaded from the file the server serves (a test in test_api.py holds the two equal); the
# base URL is the live server's, given per call. (The lazy ``from_fixture`` loader of
# schemathesis 4.32 reads ``request.node._nodeid``, which pytest 9 no longer has.)
CROSS_PARAMETER = {"/v1/loans/{loan_id}/statement": "period: ", "/v1/consistency": "sizes: "}
schema = schemathesis.openapi.from_path(str(Path(api_module.__file__).parent / "openapi.json"))


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_conforms(case: schemathesis.Case, api: Api) -> None:
    # Rules across two parameters that OpenAPI 3.0 cannot state are refused with a 400 that
    # names them: a statement period (``to`` >= ``from``, at most 366 days) and proof sizes
    # (1 <= first <= second <= the log's size). Only there may schema-valid data get a 400.
    excluded = [positive_data_acceptance] if case.operation.path in CROSS_PARAMETER else []
    response = case.call_and_validate(
        base_url=api.url,
        headers={"Authorization": f"Bearer {api.officer}"},
        excluded_checks=excluded,
    )
    positive = case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE
    if excluded and positive and response.status_code == 400:
        assert CROSS_PARAMETER[case.operation.path] in response.json()["detail"]
