"""helpers.exercises: an exercise's test cell tells a stub from an answer."""

import pytest

from helpers import exercises


def _stub(x):
    raise NotImplementedError()


def test_a_stub_is_not_answered_and_an_answer_is():
    assert exercises.answered(_stub, 1) is False
    assert exercises.answered(lambda x, y=0: x + y, 1, y=2) is True


def test_any_other_error_of_an_answer_propagates():
    def wrong(x):
        raise ValueError("a wrong answer")

    with pytest.raises(ValueError, match="a wrong answer"):
        exercises.answered(wrong, 1)
