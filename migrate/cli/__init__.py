"""The command line: Click commands only; they parse options, call the library and render."""
