"""`tempo-lite capture -- <command>`: collect the traces of a CI run in a throw-away tempo-lite, assert on them.

An in-process tempo-lite (temp dir storage, free ports) receives what the command's instrumentation sends
(the OpenTelemetry SDK environment variables point at it); once the command exits and every received span
is queryable, TraceQL assertions (`--expect`, `--expect-none`, `--expect-count`, `--assertions FILE`) are
evaluated with the search engine in-process. Reports: text on stderr, JUnit XML, OTLP/JSON export.
See docs/capture.md. One module per part, the pure ones first:

- `assertions.py`: parsing and checking the assertions (usage errors before the command runs);
- `report.py`: what each assertion matched, the outcome and exit code, text and JUnit XML reports;
- `environment.py`: the throw-away instance's configuration and the command's environment;
- `run.py`: the orchestration (start tempo-lite, run the command, wait, evaluate, report);
- `command.py`: the `tempo-lite capture` options and entry.
"""
