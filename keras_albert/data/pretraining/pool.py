"""The worker pool of create-pretraining-data: `map` in item order over this process and `workers - 1` others.

Every function the pool runs is called as `function(state, item)`, where `state` is the `WorkerState` of the process
running it: the tokenizer, the spill directory (None in this process), and, once shared, the corpus, tables,
settings and shard files. Nothing travels through module globals.

Why not `multiprocessing.Pool` or `concurrent.futures.ProcessPoolExecutor`: their helper threads need the GIL, which
this process's own work holds for milliseconds at a time; they pickle every result through a 64 KiB pipe, whose turns
stall both sides for megabytes of records; and this process would only feed them, taking a core's time while
leaving it idle when it waits. Here, each worker gets its items through its own pipe, two ahead, so it never waits
for work, and answers through another; large items and results never cross a pipe: text pieces travel as files in
the spill directory (memory-backed /dev/shm where there is room), tokens come back the same way, and a worker keeps
the records it built until told where in the shards they go, then writes them there itself (`write_held`), so no
record is copied between processes. This process takes items itself when every worker has two.

Nothing outlives the run, however it ends: a worker dies with the process that started it (the kernel sends it
SIGTERM when that process dies, `prctl(PR_SET_PDEATHSIG)` on Linux, and a thread watching its parent's pid does the
same anywhere), and the worker that sees its parent gone first removes the spill directory, the corpus files and the
shards' temporary files (`cleanup_after`), so a `kill -9` of the command leaves nothing in /dev/shm. Ctrl-C reaches
only the main process (workers ignore SIGINT), which stops them. Spill directories carry the owner's pid, and a
new run removes those whose owner is gone (`remove_stale_spills`), should a worker have been killed with its parent.
"""

import ctypes
import dataclasses
import gc
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time

import numpy as np

from keras_albert import io, signals
from keras_albert.data.pretraining import instances, writer
from keras_albert.data.pretraining.corpus import Corpus
from keras_albert.data.pretraining.settings import PretrainingDataSettings

# Room the files in flight between processes may need: a few pieces and task results per worker (~1 MB each).
SPILL_PER_WORKER = 32 << 20


SPILL_PREFIX = "keras-albert-spill-"
CORPUS_PREFIX = "keras-albert-corpus-"
_OWNED = re.compile(r"keras-albert-(?:spill|corpus)-(\d+)-")
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_WATCH_SECONDS = 0.2


def spill_root(needed):
    """Where processes leave files for each other: memory-backed /dev/shm when there is one with `needed` bytes
    free (containers often mount only 64 MB there), else the system's temporary directory (None)."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= needed:
        return shm
    return None


def make_spill_dir(root, prefix=SPILL_PREFIX):
    """A new directory for files between processes, named with this process's pid (`remove_stale_spills`)."""
    remove_stale_spills(root)
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=root)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_spills(root=None):
    """Removes the spill and corpus directories under `root` (default: the temporary directory) whose owning process
    is gone: what a run killed together with its workers (kill -9 of the whole group) left behind."""
    root = root or tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return
    for name in names:
        match = _OWNED.match(name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


class SpillFile:
    """The name of a file in the spill directory that the receiving process reads once and removes."""

    def __init__(self, path):
        self.path = path

    @classmethod
    def save(cls, path, data):
        with open(path, "wb") as file:
            file.write(data)
        return cls(path)

    def take(self):
        with open(self.path, "rb") as file:
            data = file.read()
        os.unlink(self.path)
        return data

    @classmethod
    def save_arrays(cls, path, arrays):
        with open(path, "wb") as file:
            for array in arrays:
                np.save(file, array)
        return cls(path)

    def take_arrays(self, count):
        with open(self.path, "rb") as file:
            arrays = [np.load(file) for _ in range(count)]
        os.unlink(self.path)
        return arrays


class Held:
    """A task's records kept by worker `rank`, which writes them when told where (`WorkerPool.write_held`)."""

    def __init__(self, rank, position):
        self.rank, self.position = rank, position


@dataclasses.dataclass
class SharedInputs:
    """What every instance task reads: the corpus, the vocabulary tables, the settings and the shard files."""

    corpus: Corpus
    tables: instances.Tables
    settings: PretrainingDataSettings
    shard_files: list

    def save(self, spill, corpus_dir):
        """Into files a worker maps (`load`): the arrays as .npy (one copy of the corpus in memory, whatever the
        number of workers), the rest as JSON."""
        self.corpus.save(corpus_dir)
        for name in instances.Tables.ARRAYS:
            np.save(os.path.join(spill, f"tables-{name}.npy"), getattr(self.tables, name))
        state = {
            "settings": dataclasses.asdict(self.settings),
            "tables": self.tables.scalars(),
            "corpus_dir": corpus_dir,
            "shard_files": list(self.shard_files),
        }
        io.write_json(os.path.join(spill, "state.json"), state)

    @classmethod
    def load(cls, spill):
        state = io.read_json(os.path.join(spill, "state.json"), what="worker state")
        arrays = {name: np.load(os.path.join(spill, f"tables-{name}.npy")) for name in instances.Tables.ARRAYS}
        return cls(
            corpus=Corpus.load(state["corpus_dir"]),
            tables=instances.Tables(**arrays, **state["tables"]),
            settings=PretrainingDataSettings(**state["settings"]),
            shard_files=state["shard_files"],
        )


class WorkerState:
    """One process's state, passed to every function the pool runs there.

    Args:
        tokenizer: `Tokenizer` or None.
        spill: str or None. The spill directory in a worker process; None in the process that runs the pool, whose
            results need no files.
        rank: int or None. The worker's index.
    """

    def __init__(self, tokenizer=None, spill=None, rank=None):
        self.tokenizer, self.spill, self.rank = tokenizer, spill, rank
        self.shared = None
        self.held = {}  # in a worker: task position -> the records it built, until told where they go
        self.files = {}  # in a worker: shard -> open descriptor

    @property
    def in_worker(self):
        return self.spill is not None

    def inputs(self):
        """The `SharedInputs`, loaded from the spill directory at a worker's first instance task."""
        if self.shared is None:
            self.shared = SharedInputs.load(self.spill)
        return self.shared

    def hold(self, position, blob):
        """Keeps a task's records in this worker; the marker to send back instead."""
        self.held[position] = blob
        return Held(self.rank, position)

    def write_held(self, position, placements):
        writer.write_slices(self.held.pop(position), placements, self._shard_file)

    def _shard_file(self, shard):
        if shard not in self.files:
            self.files[shard] = os.open(self.inputs().shard_files[shard], os.O_WRONLY)
        return self.files[shard]

    def close(self):
        for descriptor in self.files.values():
            os.close(descriptor)
        self.files = {}


def cleanup_after(spill):
    """What a run leaves outside its output: the spill directory, a corpus directory on disk, and the shards'
    temporary files (never a shard under its final name). Run by a worker whose parent died without cleaning up."""
    try:
        state = io.read_json(os.path.join(spill, "state.json"), what="worker state")
    except Exception:  # not shared yet (or half written): only the spill directory exists
        state = {}
    for path in state.get("shard_files", []):
        try:
            os.unlink(path)
        except OSError:
            pass
    corpus_dir = state.get("corpus_dir")
    if corpus_dir and os.path.abspath(corpus_dir) != os.path.abspath(spill):
        shutil.rmtree(corpus_dir, ignore_errors=True)
    shutil.rmtree(spill, ignore_errors=True)


class _ParentWatch:
    """Makes a worker process die with its parent, cleaning up what the parent could not (`cleanup_after`).

    The kernel sends SIGTERM when the parent dies (Linux's PR_SET_PDEATHSIG); a thread polling the parent's pid
    covers other systems and the instant between fork and prctl. SIGTERM while the parent lives (its `terminate`)
    ends the worker without cleaning up: the parent does that. SIGINT is ignored: Ctrl-C stops the parent, which
    stops the workers.
    """

    def __init__(self, parent_pid, spill):
        self.parent_pid, self.spill = parent_pid, spill
        self.lock = threading.RLock()  # a second SIGTERM may arrive while the handler cleans up

    def start(self):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
            except (OSError, AttributeError):  # no prctl: the thread below still watches
                pass
        threading.Thread(target=self._watch, name="parent-watch", daemon=True).start()
        if self.parent_gone():  # died before prctl took effect
            self.exit()

    def parent_gone(self):
        return os.getppid() != self.parent_pid

    def _on_sigterm(self, signum, frame):
        # The parent-death signal can be handled before this process shows as reparented: wait a moment for it.
        self.await_parent_exit(seconds=0.5)
        os._exit(128 + signal.SIGTERM)

    def _watch(self):
        while not self.parent_gone():
            time.sleep(PARENT_WATCH_SECONDS)
        self.exit()

    def await_parent_exit(self, seconds=5.0):
        """Cleans up and exits once the parent is gone, waiting up to `seconds` for it: a parent killed with -9
        closes its pipes before the kernel reparents this process, so `parent_gone` can still be False when the
        pipe's end is seen (and the process would exit before the parent-death signal arrives)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.parent_gone():
                self.exit()
            time.sleep(0.005)

    def exit(self):
        with self.lock:  # the signal handler and the thread may both get here
            cleanup_after(self.spill)
            os._exit(128 + signal.SIGTERM)


def _worker_main(state, orders, outbox, parent_pid):
    """A worker process: runs items and write orders from `orders` until None, answering each on `outbox`."""
    watch = _ParentWatch(parent_pid, state.spill)
    watch.start()
    gc.disable()  # millions of short-lived objects and no reference cycles: the collector's passes only cost time
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker process
    instances.compiled_module()  # loaded while the main process still reads the first input file
    try:
        while True:
            try:
                message = orders.recv()
            except EOFError:  # its end closed without the None that ends a worker: the parent died
                watch.await_parent_exit()
                raise
            if message is None:
                return
            kind, index, payload = message  # ("run", item index, (function, item)) or ("write", position, placements)
            try:
                if kind == "run":
                    function, item = payload
                    result = function(state, item)
                else:
                    result = state.write_held(index, payload)
                outbox.send((kind, index, result, None))
            except BaseException as error:  # sent back to the main process, which raises it
                try:
                    outbox.send((kind, index, None, error))
                except Exception:  # an error that does not pickle
                    outbox.send((kind, index, None, RuntimeError(f"{type(error).__name__}: {error}")))
    finally:
        state.close()
        if watch.parent_gone():  # its pipes closed with it (EOFError): this worker may be the first to know
            watch.exit()


class WorkerPool:
    """`map(function, items)` in item order over this process and `workers - 1` worker processes (the results are
    the same whichever process runs an item).

    Args:
        workers: int. Processes, this one included.
        tokenizer: `Tokenizer` or None. For the functions that tokenize (`state.tokenizer`).
        spill: str or None. A directory for the files between processes (needed with workers > 1).
    """

    def __init__(self, workers, tokenizer=None, spill=None):
        self.workers = workers
        self.spill = spill
        self.state = WorkerState(tokenizer)  # this process's
        self.processes, self.orders, self.inboxes = [], [], []
        self.in_flight = []  # items sent to each worker and not yet answered
        self.writes = 0  # write orders not yet done
        self.directories = []  # made here, removed on exit

    def __enter__(self):
        if self.workers > 1:
            # Fork is cheap and shares the tokenizer; after TensorFlow is loaded only spawn is safe.
            method = "spawn" if "tensorflow" in sys.modules or sys.platform != "linux" else "fork"
            context = multiprocessing.get_context(method)
            try:
                for rank in range(self.workers - 1):
                    orders_in, orders_out = context.Pipe(duplex=False)
                    inbox, outbox = context.Pipe(duplex=False)
                    state = WorkerState(self.state.tokenizer, self.spill, rank)
                    process = context.Process(
                        target=_worker_main, args=(state, orders_in, outbox, os.getpid()), daemon=True
                    )
                    process.start()
                    orders_in.close()
                    outbox.close()
                    self.processes.append(process)
                    self.orders.append(orders_out)
                    self.inboxes.append(inbox)
                    self.in_flight.append(0)
            except BaseException:
                self._stop(terminate=True)
                raise
        return self

    def share(self, inputs):
        """Make `inputs` (`SharedInputs`) what instance tasks read, here and, through files, in every worker."""
        self.state.shared = inputs
        if not self.processes:
            return
        corpus_dir = self.spill
        if shutil.disk_usage(self.spill).free < inputs.corpus.nbytes + len(self.processes) * SPILL_PER_WORKER:
            # A corpus too large for memory-backed /dev/shm goes to disk, where the page cache still shares it.
            corpus_dir = make_spill_dir(spill_root(2 * inputs.corpus.nbytes), prefix=CORPUS_PREFIX)
            self.directories.append(corpus_dir)
        inputs.save(self.spill, corpus_dir)

    def map(self, function, items, ship=None):
        """`function(state, item)` for every item, yielded in item order. `ship(item, spill)` turns an item into
        what is sent to a worker (large data into spill files); `function` is a module-level function."""
        if not self.processes:
            return self._map_here(function, items)
        return self._map(function, items, ship)

    def _map_here(self, function, items):
        for item in items:
            signals.check()  # between items: a terminating signal whose exception was swallowed is raised here
            yield function(self.state, item)

    def _map(self, function, items, ship):
        done = {}  # index -> result, computed here or received
        count = following = 0
        for count, item in enumerate(items, 1):
            signals.check()  # between items: a terminating signal whose exception was swallowed is raised here
            self._receive(done, block=False)
            rank = min(range(len(self.processes)), key=self.in_flight.__getitem__)
            if self.in_flight[rank] < 2:
                shipped = ship(item, self.spill) if ship else item
                self.orders[rank].send(("run", count - 1, (function, shipped)))
                self.in_flight[rank] += 1
            else:
                done[count - 1] = function(self.state, item)
            while following in done:
                yield done.pop(following)
                following += 1
        while following < count:
            signals.check()
            if following not in done:
                self._receive(done, block=True)
                continue
            yield done.pop(following)
            following += 1

    def write_held(self, held, placements):
        """Have the worker holding a task's records (`Held`) write them: (shard, file offset, start, end) each."""
        self.orders[held.rank].send(("write", held.position, placements))
        self.writes += 1

    def wait_for_writes(self):
        while self.writes:
            signals.check()
            self._receive({}, block=True)

    def _receive(self, done, block):
        """Messages that workers have sent (waiting for one with `block`); a worker's error is raised here."""
        sentinels = [process.sentinel for process in self.processes]
        for ready in multiprocessing.connection.wait(self.inboxes + sentinels, timeout=None if block else 0):
            if ready in sentinels:
                self._died(self.processes[sentinels.index(ready)])
            rank = self.inboxes.index(ready)
            try:
                while ready.poll():
                    kind, index, result, error = ready.recv()
                    if error is not None:
                        raise error
                    if kind == "run":
                        self.in_flight[rank] -= 1
                        done[index] = result
                    else:
                        self.writes -= 1
            except EOFError:  # the worker's end of the pipe closed: it is gone
                self._died(self.processes[rank])

    @staticmethod
    def _died(process):
        process.join(timeout=10)
        raise RuntimeError(f"a create-pretraining-data worker process died (exit code {process.exitcode})")

    def _stop(self, terminate):
        for orders in self.orders:
            try:
                orders.send(None)
            except OSError:  # the worker is gone
                pass
        for process in self.processes:
            if terminate:
                process.terminate()
            process.join(timeout=10 if terminate else 60)
            if process.is_alive():  # stuck sending a result nobody reads
                process.terminate()
                process.join(timeout=10)
        for connection in self.orders + self.inboxes:
            connection.close()
        self.processes, self.orders, self.inboxes = [], [], []

    def __exit__(self, *exc):
        self._stop(terminate=exc[0] is not None)
        for directory in self.directories:
            shutil.rmtree(directory, ignore_errors=True)
        return False
