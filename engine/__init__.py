"""ND73 Workflow engine: definitions, runtime, store, scripting sandbox and clock.

Pure Python, no web framework: usable from a script, a test or the Flask app alike.
"""
