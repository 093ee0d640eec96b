"""The course's tools around the core package: what runs the course rather than what a student
reads. They import :mod:`helpers` (the core); the core never imports them, and ``import helpers``
loads none of them.

Modules: ``cli`` (``python -m helpers``: every command), ``runner`` (runs the notebooks with
papermill under a profile of ``params/``), ``experiments`` (sweep and cross-strategy matrix),
``report`` (tables and sentences from their results), ``evaluation`` (scoring a predictor on a
test set with fixed masks), ``probe`` (linear probe of an encoder), ``publishing`` (a course
checkpoint published with its provenance), ``grading`` (students' models on a hidden test set; the
nbgrader course), ``bench`` and ``quality`` (benchmarks), ``_startup`` (TensorFlow's start-up
noise).
"""
