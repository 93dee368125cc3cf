"""The application on top of the pipelines: the command line, local runs, submit, scheduling.

Nothing in the stages, the core or the pipelines imports this package.
"""
