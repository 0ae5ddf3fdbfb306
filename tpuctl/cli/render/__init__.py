"""One renderer per command: it draws the operation's result, and what the operation reports
while it works, as text (rich on a terminal, plain when piped) or as JSON (`--json`), and
with `--dry-run` the transcript of what would have been sent. Command modules (tpuctl/cli/*)
parse flags, build a request, call one ops function and hand the result here; they never
print. Errors are rendered in one place too (`output.render_error`, from cli/main.py)."""
