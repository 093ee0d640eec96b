"""The notebooks' exercises: what their test cells call (the nbgrader course is
:mod:`helpers.tools.grading`)."""


def answered(function, *args, **kwargs) -> bool:
    """False when ``function(*args, **kwargs)`` raises ``NotImplementedError`` (the stub nbgrader
    leaves in a student's answer cell), else True; any other error propagates."""
    try:
        function(*args, **kwargs)
    except NotImplementedError:
        return False
    return True
