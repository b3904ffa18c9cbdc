"""The data endpoints' JSON bodies: the same values Starlette's JSONResponse writes, and the same
refusal of a value JSON cannot carry (infinity, NaN)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.responses import JSONResponse

from reference.api.answers import JSONAnswer

# What a row of the STRICT tables holds, and the answers' own fields around the rows.
_values = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text()
_rows = st.dictionaries(st.text(), _values, max_size=5)
_answers = st.dictionaries(st.text(), _values | st.lists(_rows, max_size=3), max_size=5)


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


@given(_answers)
def test_an_answer_has_the_values_starlette_would_write_or_is_refused_as_it_would_be(
    answer: dict[str, Any],
) -> None:
    if _finite(answer):
        body = JSONAnswer(answer).body
        assert json.loads(body) == json.loads(JSONResponse(answer).body)
    else:
        with pytest.raises(ValueError):
            JSONResponse(answer)
        with pytest.raises(ValueError):
            JSONAnswer(answer)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '"NaN"'])
def test_text_that_spells_a_non_finite_number_is_still_text(text: str) -> None:
    answer = {"symbol": text, text: 1.5}
    assert json.loads(JSONAnswer(answer).body) == answer


def test_an_answer_is_utf8_json_with_the_media_type_of_json() -> None:
    response = JSONAnswer({"symbol": "EURUSD", "bid": 1e-05})
    assert response.media_type == "application/json"
    assert json.loads(response.body.decode("utf-8")) == {"symbol": "EURUSD", "bid": 1e-05}
