import io
import logging

from rung.core.progress import Progress, format_seconds


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_every_tenth_and_at_the_end():
    out = io.StringIO()
    with Progress(100, "work", unit="step", stream=out) as p:
        for k in range(1, 101):
            p.update(k, f"k={k}")
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("work 10/100 (10%)") and lines[0].endswith("k=10")
    assert lines[-1].startswith("work 100/100 (100%)") and "ETA 0:00" in lines[-1] and "step/s" in lines[-1]


def test_logging_when_no_stream_and_nothing_when_disabled(caplog):
    with caplog.at_level(logging.INFO, logger="rung.test"):
        p = Progress(4, "job", log="rung.test", every=0.5)
        for k in range(1, 5):
            p.update(k)
        Progress(4, "quiet", log="rung.test", enabled=False).update(4)
    assert [r.getMessage().split()[1] for r in caplog.records] == ["2/4", "4/4"]


def test_ranks():
    out = io.StringIO()
    p = Progress(50, "farm", stream=out, rank=1, size=2)
    for k in range(1, 51):
        p.update(k)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and all(s.startswith("[rank 1] farm") for s in lines)
    assert p.done == 50 and p.rate() > 0


def test_bar_on_a_terminal():
    tty = _Tty()
    with Progress(3, "bar", unit="conf", stream=tty) as p:
        for k in range(1, 4):
            p.update(k, "ok")
    assert "bar" in tty.getvalue() and "3/3" in tty.getvalue()
    other = _Tty()
    Progress(3, "bar", stream=other, rank=1, size=2).update(3)  # rank > 0: a plain line, no bar
    assert other.getvalue().startswith("[rank 1] bar 3/3")


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 73, 4000, float("inf"), -1)] == ["0:00", "1:13", "1:06:40", "?", "?"]
