"""The seed's investigation example: a slow customer report, investigated by backend, frontend and
database clusters at once, with real tools wrapped in scripted agents; then a scripted synthesis."""
