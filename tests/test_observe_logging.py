"""relay.observe.LineBatchHandler: the lines of one event-loop iteration in one write, in order;
warnings, errors and lines logged off the loop at once."""

from __future__ import annotations

import asyncio
import io
import logging
import threading

from relay.observe import LineBatchHandler


class Writes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def write(self, text: str) -> int:
        self.count += 1
        return super().write(text)


def _logger(stream: Writes) -> logging.Logger:
    handler = LineBatchHandler()
    handler.setStream(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"test.batch.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def test_lines_of_one_iteration_share_a_write() -> None:
    stream = Writes()
    log = _logger(stream)

    async def main() -> None:
        for n in range(3):
            log.info("line %d", n)
        assert stream.getvalue() == ""  # not yet: at the end of this iteration
        await asyncio.sleep(0)
        assert stream.getvalue() == "INFO line 0\nINFO line 1\nINFO line 2\n" and stream.count == 1
        log.info("pending")
        log.warning("now")  # at once, after what was pending
        assert stream.getvalue().endswith("INFO pending\nWARNING now\n")
        log.info("later")
        await asyncio.sleep(0)
        assert stream.getvalue().endswith("WARNING now\nINFO later\n")

    asyncio.run(main())


def test_off_the_loop_a_line_is_written_at_once() -> None:
    stream = Writes()
    log = _logger(stream)
    thread = threading.Thread(target=log.info, args=("from a thread",))
    thread.start()
    thread.join()
    log.info("no loop")
    assert stream.getvalue() == "INFO from a thread\nINFO no loop\n" and stream.count == 2


def test_a_pending_line_is_written_when_the_handler_is_flushed() -> None:
    stream = Writes()
    log = _logger(stream)

    async def main() -> None:
        log.info("last words")

    asyncio.run(main())  # the loop closed before its callback ran, or after: either way flush() writes
    log.handlers[0].flush()
    assert stream.getvalue() == "INFO last words\n"


def test_a_new_loop_flushes_what_a_closed_one_left() -> None:
    stream = Writes()
    log = _logger(stream)
    first = asyncio.new_event_loop()

    def last_iteration() -> None:
        first.stop()  # this iteration is the loop's last: the flush it schedules never runs
        log.info("left behind")

    first.call_soon(last_iteration)
    first.run_forever()
    first.close()
    assert stream.getvalue() == ""  # its flush never ran

    async def main() -> None:
        log.info("next")
        await asyncio.sleep(0)

    asyncio.run(main())
    assert stream.getvalue() == "INFO left behind\nINFO next\n"
