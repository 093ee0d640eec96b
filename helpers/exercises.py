"""The notebooks' exercises: what their test cells call.

Each exercise of notebooks 01-05 is a function the student writes in an answer cell (nbgrader
replaces the solution with ``raise NotImplementedError()`` in the student version) followed by a
test cell that nbgrader scores. The test cells run their tests only when :func:`answered` says
the exercise is answered. The nbgrader course around them (``python -m helpers course``) is
:mod:`helpers.tools.grading`.
"""


def answered(function, *args, **kwargs) -> bool:
    """False when ``function(*args, **kwargs)`` raises ``NotImplementedError`` (the stub nbgrader
    leaves in a student's answer cell), else True; any other error propagates.

    An exercise's test cell runs its tests only when the exercise is answered and ends with the
    points earned: ``0`` for an unanswered exercise, so that Run All of an unanswered notebook
    goes on to the end (nbgrader reads a number as the last output of a grade cell as its score).
    A wrong answer fails an assertion, as before."""
    try:
        function(*args, **kwargs)
    except NotImplementedError:
        return False
    return True
