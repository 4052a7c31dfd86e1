"""Runs Livy statements for real: one shared local SparkSession, one Python namespace per session.

The SparkSession (pyspark, local mode, the machine's Java) starts lazily on the
first session and is shared by every emulated Livy session for the life of the
process; an emulator reset keeps it. Statements run one at a time on a single
worker thread, never on the emulator's event loop; each session's namespace has
``spark``, ``sc`` and ``sys`` bound, like Livy's PySpark REPL.

Output follows Livy: ``{"status": "ok", "execution_count": n, "data": {"text/plain": ...}}``
(stdout, then the repr of a final expression), or ``{"status": "error", "ename",
"evalue", "traceback"}``. ``kind: "sql"`` runs ``spark.sql`` and answers
``application/json`` (``schema`` and ``data``); Scala and R are not supported.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import sys
import tempfile
import threading
import traceback
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="livy-statement")
_spark_lock = threading.Lock()
_spark: Any = None


def spark_session() -> Any:
    """The shared local SparkSession, started on first use (a few seconds)."""
    global _spark
    with _spark_lock:
        if _spark is None:
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
            from pyspark.sql import SparkSession

            work = tempfile.mkdtemp(prefix="aml-emulator-spark-")
            _spark = (
                SparkSession.builder.master("local[2]")
                .appName("aml-emulator-livy")
                .config("spark.ui.enabled", "false")
                .config("spark.sql.shuffle.partitions", "2")
                .config("spark.sql.catalogImplementation", "in-memory")
                .config("spark.sql.warehouse.dir", os.path.join(work, "warehouse"))
                .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={work}")
                .getOrCreate()
            )
            _spark.sparkContext.setLogLevel("ERROR")
            # PySpark 4 warns on every first DataFrame.toJSON(); Spark 3.5 (what Fabric runtime 1.3 runs)
            # does not. sparkmagic's %%sql calls toJSON and parses the statement's output as JSON lines, and
            # Livy's REPL appends stderr to that output, so the emulator must not add a warning Livy never sees.
            warnings.filterwarnings("ignore", message="The return type of DataFrame.toJSON", category=UserWarning)
        return _spark


def new_namespace() -> dict[str, Any]:
    """A session's globals; ``spark`` and ``sc`` are bound once Spark is up (:func:`start`)."""
    return {"__name__": "__main__", "sys": sys}


def start(namespace: dict[str, Any]) -> Future:
    """Start Spark (if needed) and bind it into ``namespace``, on the statement thread."""

    def run() -> None:
        spark = spark_session()
        namespace.update(spark=spark, sc=spark.sparkContext)

    return _executor.submit(run)


def submit(namespace: dict[str, Any], code: str, kind: str, execution_count: int) -> Future:
    """Run ``code`` after every statement submitted before it; the future's result is Livy's ``output``."""
    return _executor.submit(_run, namespace, code, kind, execution_count)


def _run(namespace: dict[str, Any], code: str, kind: str, execution_count: int) -> dict[str, Any]:
    try:
        if kind == "sql":
            data = _sql(namespace, code)
        elif kind in ("pyspark", "python", ""):
            data = {"text/plain": _python(namespace, code)}
        else:
            raise NotImplementedError(f"The emulator runs only pyspark and sql statements, not {kind!r}.")
    except BaseException as e:  # noqa: BLE001 - the user's code may raise anything, SystemExit included
        return {"status": "error", "execution_count": execution_count, "ename": type(e).__name__,
                "evalue": str(e), "traceback": user_traceback(e)}
    return {"status": "ok", "execution_count": execution_count, "data": data}


def user_traceback(error: BaseException) -> list[str]:
    """Livy's traceback lines: only the frames of the user's code (``<stdin>``), then the exception."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == "<stdin>"]
    return (["Traceback (most recent call last):\n"] + traceback.format_list(frames)
            + traceback.format_exception_only(type(error), error))


class _ThreadOutput(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` while a statement runs: the statement thread's writes are captured,
    other threads' writes go where they went before."""

    def __init__(self, original: Any, buffer: io.StringIO) -> None:
        self.original, self.buffer, self.thread = original, buffer, threading.get_ident()

    def write(self, text: str) -> int:
        target = self.buffer if threading.get_ident() == self.thread else self.original
        return target.write(text)

    def flush(self) -> None:
        if threading.get_ident() != self.thread:
            self.original.flush()


@contextlib.contextmanager
def _captured(buffer: io.StringIO):
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _ThreadOutput(saved[0], buffer), _ThreadOutput(saved[1], buffer)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved


def _python(namespace: dict[str, Any], code: str) -> str:
    tree = ast.parse(code, "<stdin>", "exec")
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    out = io.StringIO()
    with _captured(out):
        exec(compile(tree, "<stdin>", "exec"), namespace)  # noqa: S102 - the emulator runs the user's code
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<stdin>", "eval"), namespace)  # noqa: S307
            if value is not None:
                print(repr(value))
    return out.getvalue().rstrip("\n")


def _sql(namespace: dict[str, Any], code: str) -> dict[str, Any]:
    frame = namespace["spark"].sql(code)
    rows = [list(r) for r in frame.collect()]
    schema = {"type": "struct", "fields": [{"name": f.name, "type": f.dataType.simpleString(), "nullable": f.nullable,
                                            "metadata": {}} for f in frame.schema.fields]}
    return {"application/json": {"schema": schema, "data": rows}}
